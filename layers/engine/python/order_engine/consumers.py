"""SQS batch handling: each record on its own, and a partial batch response.

Powertools' BatchProcessor runs each record and answers
`{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}` with only the ids of
this batch whose record raised, which Lambda (ReportBatchItemFailures) and the local
runtime then return to the queue while deleting the rest.

The records of one batch run at the same time, each on a thread: a step mostly waits
(both venues' quotes, ~0.2 s; a confirmation, 2-3 s after submission), and in series
the tenth record of a batch would wait out the nine before it. They are independent:
different orders, or a duplicate of one, which the conditional transition settles as
it does between two Lambda containers; a standard queue promises no order among them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from order_engine.errors import PoisonMessage
from order_engine.messaging import (
    NOTIFY_TOPIC,
    WATCH_TOPIC,
    decode_notify_message,
    decode_step_message,
)
from order_engine.observability import order_context
from order_engine.orders import Step
from order_engine.pipeline import RetryLater
from order_engine.telemetry import step_span
from order_engine.wiring import Engine

log = logging.getLogger(__name__)


# A batch has at most 10 records (SQS's receive limit) unless a batching window
# gathers more; past this, records wait for a thread.
MAX_RECORD_THREADS = 10


class ConcurrentBatchProcessor(BatchProcessor):
    """Powertools' BatchProcessor with the records of a batch run at once. Its success
    and failure bookkeeping appends to lists, which is safe from several threads."""

    def process(self) -> list[tuple[Any, ...]]:
        if len(self.records) <= 1:
            return super().process()
        workers = min(len(self.records), MAX_RECORD_THREADS)
        with ThreadPoolExecutor(workers, thread_name_prefix="sqs-record") as pool:
            return list(pool.map(self._process_record, self.records))


def batch_processor() -> BatchProcessor:
    # A fully failed batch is still answered with its list, rather than raised: the
    # effect is the same (everything returns to the queue) and the log says why.
    return ConcurrentBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def handle_step_batch(engine: Engine, step: Step, event: dict[str, Any]) -> dict[str, Any]:
    """The batch's records, each advancing its order by one state; the messages their
    transitions wrote go out together once all are done (outbox.OutboxBatch)."""
    outbox = engine.delivering_outbox.batch()

    def record_handler(record: SQSRecord) -> None:
        with _poison_goes_to_the_dlq(engine, step.value, record):
            message = decode_step_message(record.body)
            if message.step is not step:
                raise PoisonMessage(f"a {message.step} message arrived on the {step} queue")
        with order_context(message.order_id), step_span(step.value, message.order_id):
            try:
                result = engine.pipeline.handle(message, outbox=outbox)
            except RetryLater as retry:
                _set_visibility(engine, step.value, record, retry.delay_seconds)
                log.info("step %s: %s", step, retry)
                raise
            log.info("step %s: %s", step, result)

    try:
        return dict(process_partial_response(event, record_handler, batch_processor()))
    finally:
        outbox.flush()


def handle_notify_batch(engine: Engine, event: dict[str, Any]) -> dict[str, Any]:
    def record_handler(record: SQSRecord) -> None:
        with _poison_goes_to_the_dlq(engine, NOTIFY_TOPIC, record):
            message = decode_notify_message(record.body)
        with order_context(message.order_id):
            if message.subscribe_connection_id is not None:
                engine.subscriptions.subscribe(message.subscribe_connection_id, message.order_id)
            engine.notifier.deliver(message.order_id)

    return dict(process_partial_response(event, record_handler, batch_processor()))


def handle_watch_batch(engine: Engine, event: dict[str, Any]) -> dict[str, Any]:
    """The price watch's ticks (watch.py); a batch holds one, or a stray duplicate."""

    def record_handler(record: SQSRecord) -> None:
        with _poison_goes_to_the_dlq(engine, WATCH_TOPIC, record):
            tick = _decode_tick(record.body)
        log.debug("watch: %s", engine.watch.tick(tick))

    return dict(process_partial_response(event, record_handler, batch_processor()))


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
