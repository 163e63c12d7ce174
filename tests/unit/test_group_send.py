"""GroupSender: sends that meet a request in flight share the next one, and each caller
gets its own outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from order_engine.group_send import GroupSender


class SlowQueue:
    """Records each request; the first one waits until released."""

    def __init__(self, refuse: set[int] | None = None, fail_on: int | None = None) -> None:
        self.requests: list[list[int]] = []
        self.first_may_finish = threading.Event()
        self.refuse = refuse or set()
        self.fail_on = fail_on

    def send(self, rows: Sequence[int]) -> list[int]:
        self.requests.append(list(rows))
        if len(self.requests) == 1:
            self.first_may_finish.wait(5)
        if self.fail_on is not None and self.fail_on in rows:
            raise ConnectionError("queue unreachable")
        return [row for row in rows if row not in self.refuse]


def sender(queue: SlowQueue, limit: int = 10) -> GroupSender[int]:
    return GroupSender(queue.send, row_id=lambda row: row, limit=limit)


class Calls:
    """The first call starts alone and is held in flight; the others are made while it
    is, then everything is let go. Each outcome is a list of ids or an exception."""

    def __init__(self, queue: SlowQueue, group: GroupSender[int], calls: list[list[int]]):
        self.outcomes: list[object] = [None] * len(calls)
        threads = [
            threading.Thread(target=self._call, args=(group, i, c)) for i, c in enumerate(calls)
        ]
        threads[0].start()
        while not queue.requests:
            time.sleep(0.001)
        for thread in threads[1:]:
            thread.start()
        time.sleep(0.05)  # all of them waiting behind the first request
        queue.first_may_finish.set()
        for thread in threads:
            thread.join(5)

    def _call(self, group: GroupSender[int], index: int, rows: list[int]) -> None:
        try:
            self.outcomes[index] = group.send(rows)
        except Exception as error:
            self.outcomes[index] = error


def test_a_send_to_an_idle_queue_goes_at_once_alone() -> None:
    queue = SlowQueue()
    queue.first_may_finish.set()
    assert sender(queue).send([1, 2]) == [1, 2]
    assert queue.requests == [[1, 2]]


def test_sends_arriving_during_a_request_share_the_next_one() -> None:
    queue = SlowQueue()
    outcomes = Calls(queue, sender(queue), [[1], [2], [3], [4, 5]]).outcomes

    assert queue.requests[0] == [1]
    assert len(queue.requests) == 2 and sorted(queue.requests[1]) == [2, 3, 4, 5]
    assert outcomes == [[1], [2], [3], [4, 5]]


def test_a_request_carries_at_most_the_limit() -> None:
    queue = SlowQueue()
    outcomes = Calls(queue, sender(queue, limit=3), [[0], [1, 2], [3, 4], [5]]).outcomes

    assert all(len(request) <= 3 for request in queue.requests)
    assert sorted(row for request in queue.requests for row in request) == [0, 1, 2, 3, 4, 5]
    assert outcomes == [[0], [1, 2], [3, 4], [5]]


def test_each_caller_gets_only_its_own_accepted_ids() -> None:
    queue = SlowQueue(refuse={3})
    outcomes = Calls(queue, sender(queue), [[1], [2, 3], [4]]).outcomes

    assert outcomes == [[1], [2], [4]]


def test_a_failed_request_fails_only_the_callers_it_carried() -> None:
    queue = SlowQueue(fail_on=1)
    outcomes = Calls(queue, sender(queue), [[1], [2], [3]]).outcomes

    assert isinstance(outcomes[0], ConnectionError)
    assert outcomes[1:] == [[2], [3]]


def test_the_same_row_from_two_callers_never_shares_a_request() -> None:
    # SQS refuses a whole request whose entry ids repeat (BatchEntryIdsNotDistinct).
    queue = SlowQueue()
    outcomes = Calls(queue, sender(queue), [[9], [1, 2], [2, 3]]).outcomes

    assert all(len(set(request)) == len(request) for request in queue.requests)
    assert outcomes == [[9], [1, 2], [2, 3]]


def test_a_caller_with_more_rows_than_the_limit_is_sent_whole() -> None:
    queue = SlowQueue()
    queue.first_may_finish.set()
    rows = list(range(25))
    assert sender(queue, limit=10).send(rows) == rows


def test_many_concurrent_callers_all_finish_with_their_rows() -> None:
    callers = 20
    queue = SlowQueue()
    queue.first_may_finish.set()
    group = sender(queue)
    results: dict[int, list[int]] = {}

    def call(index: int) -> None:
        results[index] = group.send([index])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert results == {i: [i] for i in range(callers)}
    assert len(queue.requests) <= callers
