"""Concurrent sends to one queue share SendMessageBatch requests, group-commit style.

Every transition publishes its messages right after its commit, and many run at once:
the records of a batch (consumers.py), and in the local runtime every invocation of a
process. Sent one request each, a queue gets a request per message however busy it is;
a third of a busy worker's CPU went on those requests.

So each queue has at most one request in flight per process. A send that finds it
idle goes at once, alone, costing no latency. Sends that arrive while a request is in
flight wait for it, then go together in the next one, up to SQS's ten entries. The
busier the queue, the fuller the requests, and nobody waits for a timer.

Each caller still gets only its own outcome: the ids of its rows that SQS accepted,
or the exception of the request that carried them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Row = TypeVar("Row")

Send = Callable[[Sequence[Row]], list[int]]
"""Sends rows in one or more requests; returns the ids SQS accepted."""


class _Waiting(Generic[Row]):
    def __init__(self, rows: Sequence[Row]) -> None:
        self.rows = rows
        self.finished = False
        self.accepted: set[int] = set()
        self.error: BaseException | None = None


class GroupSender(Generic[Row]):
    def __init__(self, send: Send[Row], row_id: Callable[[Row], int], limit: int) -> None:
        """`limit`: the rows one request may carry (a single caller with more is sent
        alone, in as many requests as `send` needs)."""
        self._send = send
        self._row_id = row_id
        self._limit = limit
        self._changed = threading.Condition()
        self._in_flight = False
        self._queue: list[_Waiting[Row]] = []

    def send(self, rows: Sequence[Row]) -> list[int]:
        """Send `rows`, with whatever else is waiting; return the ids SQS accepted."""
        me = _Waiting(rows)
        with self._changed:
            self._queue.append(me)
            while True:
                while self._in_flight and not me.finished:
                    self._changed.wait()
                if me.finished:
                    break
                self._in_flight = True
                group = self._take()
                self._changed.release()  # the request goes unlocked: others queue meanwhile
                try:
                    self._deliver(group)
                finally:
                    self._changed.acquire()
                    self._in_flight = False
                    self._changed.notify_all()
        if me.error is not None:
            raise me.error
        return [self._row_id(row) for row in me.rows if self._row_id(row) in me.accepted]

    def _take(self) -> list[_Waiting[Row]]:
        """The first waiting callers whose rows fit one request (at least one caller)."""
        group = [self._queue.pop(0)]
        count = len(group[0].rows)
        ids = {self._row_id(row) for row in group[0].rows}
        while self._queue and count + len(self._queue[0].rows) <= self._limit:
            next_ids = {self._row_id(row) for row in self._queue[0].rows}
            if ids & next_ids:
                # The same row from two callers (the sweeper and a step, say): SQS
                # refuses a request whose entry ids repeat, so it waits for the next.
                break
            count += len(self._queue[0].rows)
            ids |= next_ids
            group.append(self._queue.pop(0))
        return group

    def _deliver(self, group: list[_Waiting[Row]]) -> None:
        try:
            accepted = set(self._send([row for waiting in group for row in waiting.rows]))
        except BaseException as error:
            for waiting in group:
                waiting.error = error
        else:
            for waiting in group:
                waiting.accepted = accepted
        finally:
            for waiting in group:
                waiting.finished = True
