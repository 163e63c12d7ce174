"""Threads that publish to one queue at once share SendMessageBatch calls: idle, each
row goes at once; while a call is in flight, the rows that arrive go together in the
next one, ten at most, and a failed call costs only the rows it carried."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from order_engine.batch_sender import BatchSender


@dataclass(frozen=True)
class Row:
    id: int
    topic: str = "route"
    payload: dict[str, Any] = field(default_factory=dict)


class Sqs:
    """Answers SendMessageBatch; `hold` keeps the next call in flight until released."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.in_flight = threading.Event()
        self.fail_next: Exception | None = None
        self.refuse: set[str] = set()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        ids = [entry["Id"] for entry in Entries]
        self.calls.append(ids)
        self.in_flight.set()
        assert self.hold.wait(5)
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        return {
            "Successful": [{"Id": i} for i in ids if i not in self.refuse],
            "Failed": [{"Id": i, "Code": "Refused"} for i in ids if i in self.refuse],
        }


def send_in_threads(
    sender: BatchSender, groups: list[list[Row]], *, waiting: int | None = None
) -> tuple[list[threading.Thread], list[list[int]]]:
    """Each group sent from a thread of its own; returns once `waiting` rows (all of
    them, by default) wait for a call."""
    results: list[list[int]] = [[] for _ in groups]

    def send(index: int) -> None:
        results[index] = sender.send(groups[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(groups))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    expected = sum(len(group) for group in groups) if waiting is None else waiting
    while len(sender._waiting) < expected:
        assert time.monotonic() < deadline, "the rows never queued up"
        time.sleep(0.005)
    return threads, results


def occupy(sqs: Sqs, sender: BatchSender) -> tuple[threading.Thread, list[list[int]]]:
    """A first send, of row 0, that stays in flight until `sqs.hold` is set."""
    sqs.hold.clear()
    threads, results = send_in_threads(sender, [[Row(0)]], waiting=0)
    assert sqs.in_flight.wait(5)
    return threads[0], results


def test_an_idle_queue_sends_each_row_at_once() -> None:
    sqs = Sqs()
    sender = BatchSender(sqs, "url")
    assert sender.send([Row(1)]) == [1]
    assert sender.send([Row(2), Row(3)]) == [2, 3]
    assert sqs.calls == [["1"], ["2", "3"]]


def test_rows_that_arrive_during_a_send_go_together_in_the_next() -> None:
    sqs = Sqs()
    sender = BatchSender(sqs, "url")
    first, _ = occupy(sqs, sender)
    threads, results = send_in_threads(sender, [[Row(i)] for i in range(1, 6)])
    sqs.hold.set()
    for thread in [first, *threads]:
        thread.join(5)
    assert sqs.calls == [["0"], ["1", "2", "3", "4", "5"]]
    assert results == [[1], [2], [3], [4], [5]]


def test_a_call_carries_at_most_ten_rows() -> None:
    sqs = Sqs()
    sender = BatchSender(sqs, "url")
    first, _ = occupy(sqs, sender)
    threads, results = send_in_threads(sender, [[Row(i) for i in range(1, 26)]])
    sqs.hold.set()
    for thread in [first, *threads]:
        thread.join(5)
    assert [len(call) for call in sqs.calls] == [1, 10, 10, 5]
    assert results == [list(range(1, 26))]


def test_one_row_published_twice_at_once_never_shares_a_call() -> None:
    # SQS refuses a whole batch whose entries share an Id.
    sqs = Sqs()
    sender = BatchSender(sqs, "url")
    first, _ = occupy(sqs, sender)
    threads, results = send_in_threads(sender, [[Row(7)], [Row(7)], [Row(8)]])
    sqs.hold.set()
    for thread in [first, *threads]:
        thread.join(5)
    assert all(len(call) == len(set(call)) for call in sqs.calls)
    assert sorted(i for call in sqs.calls for i in call) == ["0", "7", "7", "8"]
    assert results == [[7], [7], [8]]


def test_a_failed_call_costs_only_its_own_rows(caplog: pytest.LogCaptureFixture) -> None:
    sqs = Sqs()
    sender = BatchSender(sqs, "url")
    sqs.fail_next = ConnectionError("SQS is down")
    first, results = occupy(sqs, sender)
    threads, waiting_results = send_in_threads(sender, [[Row(1)], [Row(2)]])
    sqs.hold.set()
    for thread in [first, *threads]:
        thread.join(5)
    assert results == [[]]  # its rows stay unsent, for the sweeper
    assert waiting_results == [[1], [2]]
    assert "publishing 1 outbox rows to url failed; they stay unsent" in caplog.text


def test_rows_sqs_refuses_are_not_reported_sent() -> None:
    sqs = Sqs()
    sqs.refuse = {"2"}
    sender = BatchSender(sqs, "url")
    assert sender.send([Row(1), Row(2), Row(3)]) == [1, 3]
