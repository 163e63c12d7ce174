"""SQS batch handling: one record at a time, and a partial batch response.

Powertools' BatchProcessor runs each record and answers
`{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}` with only the ids of
this batch whose record raised, which Lambda (ReportBatchItemFailures) and the local
runtime then return to the queue while deleting the rest.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from order_engine.errors import PoisonMessage
from order_engine.messaging import decode_notify_message, decode_step_message
from order_engine.observability import order_context
from order_engine.orders import Step
from order_engine.pipeline import RetryLater
from order_engine.wiring import Engine

log = logging.getLogger(__name__)


def _processor() -> BatchProcessor:
    # A fully failed batch is still answered with its list, rather than raised: the
    # effect is the same (everything returns to the queue) and the log says why.
    return BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def handle_step_batch(engine: Engine, step: Step, event: dict[str, Any]) -> dict[str, Any]:
    def record_handler(record: SQSRecord) -> None:
        message = decode_step_message(record.body)
        if message.step is not step:
            raise PoisonMessage(f"a {message.step} message arrived on the {step} queue")
        with order_context(message.order_id):
            try:
                result = engine.pipeline.handle(message)
            except RetryLater as retry:
                _delay_redelivery(engine, step, record, retry.delay_seconds)
                log.info("step %s: %s", step, retry)
                raise
            log.info("step %s: %s", step, result)

    return dict(process_partial_response(event, record_handler, _processor()))


def handle_notify_batch(engine: Engine, event: dict[str, Any]) -> dict[str, Any]:
    def record_handler(record: SQSRecord) -> None:
        message = decode_notify_message(record.body)
        with order_context(message.order_id):
            engine.notifier.deliver(message.order_id)

    return dict(process_partial_response(event, record_handler, _processor()))


def _delay_redelivery(engine: Engine, step: Step, record: SQSRecord, seconds: int) -> None:
    """Exponential backoff: the failed message reappears after `seconds`, not the
    queue's whole visibility timeout."""
    queue_url = engine.settings.step_queue_urls.get(step)
    if queue_url is None:
        return
    try:
        engine.sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=seconds
        )
    except Exception:  # the queue's own visibility timeout still brings it back
        log.warning("could not shorten the visibility of %s", record.message_id, exc_info=True)
