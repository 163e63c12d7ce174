"""SQS batch handling: each record on its own, and a partial batch response.

`process_batch` runs each record and answers
`{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}` with only the ids of
this batch whose record raised, which Lambda (ReportBatchItemFailures) and the local
runtime then return to the queue while deleting the rest. It is Powertools'
BatchProcessor reduced to what SQS standard queues need: importing that one costs every
cold start 40 ms of CPU (80 ms where pydantic is loaded, for the parser models it then
builds), most of a worker's import of its handler.

The records of one batch run at the same time, each on a thread: a step mostly waits
(both venues' quotes, ~0.2 s; a confirmation, 2-3 s after submission), and in series
the tenth record of a batch would wait out the nine before it. They are independent:
different orders, or a duplicate of one, which the conditional transition settles as
it does between two Lambda containers; a standard queue promises no order among them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from order_engine.errors import PoisonMessage, RetryLater
from order_engine.messaging import (
    NOTIFY_TOPIC,
    WATCH_TOPIC,
    decode_notify_message,
    decode_step_message,
)
from order_engine.observability import order_context
from order_engine.orders import Step
from order_engine.telemetry import step_span

if TYPE_CHECKING:
    from order_engine.records import Order
    from order_engine.wiring import Engine

log = logging.getLogger(__name__)


# A batch has at most 10 records (SQS's receive limit) unless a batching window
# gathers more; past this, records wait for a thread.
MAX_RECORD_THREADS = 10


@dataclass(frozen=True)
class SQSRecord:
    """What a handler reads of one record of Lambda's SQS event."""

    message_id: str
    receipt_handle: str
    body: str

    @classmethod
    def from_event(cls, record: Mapping[str, Any]) -> SQSRecord:
        return cls(record["messageId"], record["receiptHandle"], record["body"])


def process_batch(
    event: Mapping[str, Any], handler: Callable[[SQSRecord], object]
) -> dict[str, Any]:
    """Run `handler` on every record of an SQS event, at once on threads when there are
    several (one alone runs on the calling thread); the partial batch response naming
    the records that raised. A batch that failed whole is answered too, not raised: the
    effect is the same (everything returns to the queue) and the log says why."""
    records = [SQSRecord.from_event(record) for record in event["Records"]]

    def succeeded(record: SQSRecord) -> bool:
        try:
            handler(record)
        except (RetryLater, PoisonMessage):
            return False  # logged where it was raised
        except Exception:
            log.warning(
                "record %s failed; it returns to its queue", record.message_id, exc_info=True
            )
            return False
        return True

    if len(records) <= 1:
        outcomes = [succeeded(record) for record in records]
    else:
        workers = min(len(records), MAX_RECORD_THREADS)
        with ThreadPoolExecutor(workers, thread_name_prefix="sqs-record") as pool:
            outcomes = list(pool.map(succeeded, records))
    failed = [record for record, ok in zip(records, outcomes, strict=True) if not ok]
    return {"batchItemFailures": [{"itemIdentifier": record.message_id} for record in failed]}


def handle_step_batch(engine: Engine, step: Step, event: dict[str, Any]) -> dict[str, Any]:
    """The batch's records, each advancing its order by one state; the messages their
    transitions wrote go out together once all are done (outbox.OutboxBatch)."""
    outbox = engine.delivering_outbox.batch()
    orders = _orders_of(engine, event)

    def record_handler(record: SQSRecord) -> None:
        with _poison_goes_to_the_dlq(engine, step.value, record):
            message = decode_step_message(record.body)
            if message.step is not step:
                raise PoisonMessage(f"a {message.step} message arrived on the {step} queue")
        with order_context(message.order_id), step_span(step.value, message.order_id):
            try:
                result = engine.pipeline.handle(message, outbox=outbox, orders=orders)
            except RetryLater as retry:
                _set_visibility(engine, step.value, record, retry.delay_seconds)
                log.info("step %s: %s", step, retry)
                raise
            log.info("step %s: %s", step, result)

    with outbox:
        return process_batch(event, record_handler)


def _orders_of(engine: Engine, event: Mapping[str, Any]) -> dict[UUID, Order] | None:
    """The orders the batch's step messages name, read in one statement rather than one
    per record; None when that read fails, whatever the reason: each record then reads
    its own, and fails alone, saying why. A message that cannot be decoded is left to
    its record (poison)."""
    order_ids = set()
    for record in event["Records"]:
        try:
            order_ids.add(decode_step_message(record["body"]).order_id)
        except PoisonMessage:
            continue
    try:
        return engine.store.get_orders(order_ids)
    except Exception:
        return None


def handle_notify_batch(engine: Engine, event: dict[str, Any]) -> dict[str, Any]:
    def record_handler(record: SQSRecord) -> None:
        with _poison_goes_to_the_dlq(engine, NOTIFY_TOPIC, record):
            message = decode_notify_message(record.body)
        with order_context(message.order_id):
            due = None
            if message.subscribe_connection_id is not None:
                # With the new subscriber's snapshot, if the subscribe's statement read it
                # whole (the subscription's own message: it has no event of its own).
                due = engine.subscriptions.subscribe_connection(
                    message.subscribe_connection_id, message.order_id
                ).due
            engine.notifier.deliver(message.order_id, due=due)

    return process_batch(event, record_handler)


def handle_watch_batch(engine: Engine, event: dict[str, Any]) -> dict[str, Any]:
    """The price watch's ticks (watch.py); a batch holds one, or a stray duplicate."""

    def record_handler(record: SQSRecord) -> None:
        with _poison_goes_to_the_dlq(engine, WATCH_TOPIC, record):
            tick = _decode_tick(record.body)
        log.debug("watch: %s", engine.watch.tick(tick))

    return process_batch(event, record_handler)


def _decode_tick(body: str) -> int:
    try:
        data = json.loads(body)
    except ValueError:
        raise PoisonMessage("tick message is not JSON") from None
    tick = data.get("tick") if isinstance(data, dict) else None
    if isinstance(tick, bool) or not isinstance(tick, int) or tick < 1:
        raise PoisonMessage("tick message has no tick number")
    return tick


@contextmanager
def _poison_goes_to_the_dlq(engine: Engine, topic: str, record: SQSRecord) -> Iterator[None]:
    """A message that can never succeed is made visible again at once, so its receive
    count reaches maxReceiveCount in seconds and SQS parks it in the dead-letter queue,
    instead of waiting out the visibility timeout five times."""
    try:
        yield
    except PoisonMessage as exc:
        log.error("poison message %s on %s: %s", record.message_id, topic, exc)
        _set_visibility(engine, topic, record, 0)
        raise


def _set_visibility(engine: Engine, topic: str, record: SQSRecord, seconds: int) -> None:
    """Make the failed message reappear after `seconds` (exponential backoff), not after
    the queue's whole visibility timeout."""
    try:
        engine.sqs.change_message_visibility(
            QueueUrl=engine.publisher.queue_url(topic),
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=seconds,
        )
    except Exception:  # the queue's own visibility timeout still brings it back
        log.warning("could not change the visibility of %s", record.message_id, exc_info=True)
