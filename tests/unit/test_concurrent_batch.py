"""The records of one SQS batch run at the same time, and the partial batch response
still names exactly the records that failed."""

from __future__ import annotations

import threading
from typing import Any

from order_engine.consumers import SQSRecord, process_batch


def batch(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{i}",
                "receiptHandle": f"r-{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def test_records_of_a_batch_run_at_once() -> None:
    # Each record waits until all three are running: in series this would time out.
    together = threading.Barrier(3, timeout=5)

    def handler(record: SQSRecord) -> None:
        together.wait()

    answer = process_batch(batch("a", "b", "c"), handler)

    assert answer == {"batchItemFailures": []}


def test_only_the_records_that_raised_are_reported() -> None:
    def handler(record: SQSRecord) -> None:
        if record.body.startswith("bad"):
            raise ValueError(record.body)

    event = batch("ok", "bad-1", "ok", "bad-2")
    answer = process_batch(event, handler)

    failed = sorted(item["itemIdentifier"] for item in answer["batchItemFailures"])
    assert failed == ["m-1", "m-3"]


def test_a_single_record_runs_on_the_calling_thread() -> None:
    threads: list[threading.Thread] = []

    def handler(record: SQSRecord) -> None:
        threads.append(threading.current_thread())

    process_batch(batch("only"), handler)

    assert threads == [threading.current_thread()]
