"""The poller's deletes: ten to a request, never later than the linger, none lost at close."""

from __future__ import annotations

import threading
import time
from typing import Any

from local_runtime.sqs_deletes import BatchedDeletes


class RecordingSqs:
    def __init__(self, fail_first: bool = False) -> None:
        self.calls: list[tuple[float, list[str]]] = []
        self.fail_first = fail_first
        self.called = threading.Event()

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> Any:
        handles = [entry["ReceiptHandle"] for entry in Entries]
        self.calls.append((time.monotonic(), handles))
        self.called.set()
        if self.fail_first and len(self.calls) == 1:
            raise ConnectionError("SQS went away")
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries]}


def messages(*handles: str) -> list[dict[str, Any]]:
    return [{"MessageId": h, "ReceiptHandle": h} for h in handles]


def test_many_settled_messages_go_ten_to_a_request() -> None:
    sqs = RecordingSqs()
    deletes = BatchedDeletes(sqs, "url", name="q", linger=5.0)
    for i in range(25):
        deletes.add(messages(f"m{i}"))
    deletes.close(timeout=2)
    assert [len(handles) for _, handles in sqs.calls] == [10, 10, 5]
    assert [h for _, handles in sqs.calls for h in handles] == [f"m{i}" for i in range(25)]


def test_a_lone_message_waits_no_longer_than_the_linger() -> None:
    sqs = RecordingSqs()
    deletes = BatchedDeletes(sqs, "url", name="q", linger=0.2)
    added = time.monotonic()
    deletes.add(messages("only"))
    assert sqs.called.wait(2)
    waited = sqs.calls[0][0] - added
    assert 0.15 <= waited < 1.0
    deletes.close(timeout=2)


def test_close_sends_what_is_pending_at_once_and_later_adds_still_go_out() -> None:
    sqs = RecordingSqs()
    deletes = BatchedDeletes(sqs, "url", name="q", linger=60.0)
    deletes.add(messages("a", "b"))
    started = time.monotonic()
    deletes.close(timeout=2)
    assert time.monotonic() - started < 1.0
    deletes.add(messages("late"))
    assert [handles for _, handles in sqs.calls] == [["a", "b"], ["late"]]


def test_a_failed_request_does_not_stop_the_next_ones() -> None:
    sqs = RecordingSqs(fail_first=True)
    deletes = BatchedDeletes(sqs, "url", name="q", linger=0.05)
    deletes.add(messages("lost"))
    assert sqs.called.wait(2)
    deletes.add(messages("kept"))
    deletes.close(timeout=2)
    assert [handles for _, handles in sqs.calls] == [["lost"], ["kept"]]
