"""MiniStack's ASGI app, with long polls that are answered when a message arrives.

Served by `order-engine up` in MiniStack's own venv (ministack_host.py), so it imports
nothing of this project. MiniStack 1.5.33 answers a long poll (ReceiveMessage with
WaitTimeSeconds) by looking at the queue every 100 ms until a message is there or the
wait is over. A look costs 0.1-0.2 ms of CPU, and a mapping keeps five long polls
waiting: at a steady 600 orders a minute those looks were about half of MiniStack's
CPU, and each hop of a chain of queues waited up to 100 ms for the next one. SQS itself
answers a long poll as soon as a message can be received.

Here a waiting long poll sleeps until the queue may hold a message for it, then looks:
- a send of n messages wakes n of the queue's waiting polls, the longest waiting first
  (one look per message, not one per poll and 100 ms);
- a message moved to a dead-letter queue wakes a poll of that queue;
- a visibility change wakes every poll of its queue, so that each sleeps again only
  until the next message becomes visible;
- a poll never sleeps past its wait, past the moment the queue's next invisible message
  becomes visible (a delay or a visibility timeout ending), nor longer than
  `LONGEST_SLEEP`, a bound for anything that adds a message without a wake here.

What a poll returns is still MiniStack's own ReceiveMessage: this module only replaces
the sleep between its looks (`asyncio.sleep` as MiniStack's SQS module sees it).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ministack.app import app  # what uvicorn serves
from ministack.services import sqs

__all__ = ["app"]

LONGEST_SLEEP = 1.0  # seconds
MINISTACK_LOOK = 0.1  # MiniStack's own sleep between looks (sqs._act_receive_message)

Queue = dict[str, Any]  # MiniStack's record of one queue

_waiting_poll: contextvars.ContextVar[tuple[Queue, float] | None] = contextvars.ContextVar(
    "waiting_poll", default=None
)


class _Sleepers:
    """The long polls sleeping on each queue, longest waiting first."""

    def __init__(self) -> None:
        self._by_queue: dict[int, deque[asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    async def sleep(self, queue: Queue, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._loop, self._loop_thread = loop, threading.get_ident()
        woken: asyncio.Future[None] = loop.create_future()
        line = self._by_queue.setdefault(id(queue), deque())
        line.append(woken)
        try:
            async with asyncio.timeout(seconds):
                await woken
        except TimeoutError:
            pass
        finally:
            if not woken.done():
                woken.cancel()
            if woken in line:
                line.remove(woken)

    def wake(self, queue: Queue | None, count: int | None) -> None:
        """Wake `count` of the polls sleeping on `queue` (None: all of them)."""
        if queue is None or self._loop is None:
            return
        if threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self.wake, queue, count)
            return
        line = self._by_queue.get(id(queue))
        while line and (count is None or count > 0):
            woken = line.popleft()
            if not woken.done():
                woken.set_result(None)
                if count is not None:
                    count -= 1


_sleepers = _Sleepers()


def _next_visible(queue: Queue, now: float) -> float:
    later = [m["visible_at"] for m in queue["messages"] if m.get("visible_at", now) > now]
    return min(later, default=now + LONGEST_SLEEP)


class _AsyncioForSqs:
    """`asyncio` as MiniStack's SQS module sees it: the same, but a receive's sleep
    between two looks lasts until the queue may hold a message for it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        poll = _waiting_poll.get()
        if poll is None or delay < MINISTACK_LOOK:  # not a long poll, or its last look
            return await asyncio.sleep(delay, result)
        queue, deadline = poll
        now = time.time()
        until = min(deadline, _next_visible(queue, now), now + LONGEST_SLEEP)
        if until > now:
            await _sleepers.sleep(queue, until - now)
        return result


def _queue_of(data: dict[str, Any], queue_url: str) -> Queue | None:
    try:
        queue: Queue = sqs._get_q(data.get("QueueUrl", queue_url))
    except Exception:  # MiniStack's own action answers the error
        return None
    return queue


def _waits_for(data: dict[str, Any], queue: Queue) -> float:
    """The poll's wait in seconds, as MiniStack reads it (a given 0 stays 0)."""
    wait = data.get("WaitTimeSeconds")
    if wait is None:
        wait = queue["attributes"].get("ReceiveMessageWaitTimeSeconds", "0")
    try:
        return float(int(wait))
    except (TypeError, ValueError):
        return 0.0  # MiniStack answers the error


def _receiving(
    receive: Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]],
) -> Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]:
    async def receive_message(data: dict[str, Any], queue_url: str) -> dict[str, Any]:
        queue = _queue_of(data, queue_url)
        if queue is None:
            return await receive(data, queue_url)
        token = _waiting_poll.set((queue, time.time() + _waits_for(data, queue)))
        try:
            return await receive(data, queue_url)
        finally:
            _waiting_poll.reset(token)

    return receive_message


def _waking(
    action: Callable[[dict[str, Any], str], dict[str, Any]],
    count: Callable[[dict[str, Any], dict[str, Any]], int | None],
) -> Callable[[dict[str, Any], str], dict[str, Any]]:
    def act(data: dict[str, Any], queue_url: str) -> dict[str, Any]:
        result = action(data, queue_url)
        _sleepers.wake(_queue_of(data, queue_url), count(data, result))
        return result

    return act


def _sent(_data: dict[str, Any], result: dict[str, Any]) -> int:
    return len(result.get("Successful", [])) if "Successful" in result else 1


def _everyone(_data: dict[str, Any], _result: dict[str, Any]) -> None:
    return None


def _sweeping(sweep: Callable[[Queue], None]) -> Callable[[Queue], None]:
    def dlq_sweep(queue: Queue) -> None:
        before = len(queue["messages"])
        sweep(queue)
        moved = before - len(queue["messages"])
        if moved > 0:
            try:
                arn = json.loads(queue["attributes"]["RedrivePolicy"])["deadLetterTargetArn"]
            except (KeyError, TypeError, ValueError):
                return
            _sleepers.wake(sqs._queue_by_arn(arn), moved)

    return dlq_sweep


def _install() -> None:
    handlers = sqs._HANDLERS
    handlers["ReceiveMessage"] = _receiving(handlers["ReceiveMessage"])
    handlers["SendMessage"] = _waking(handlers["SendMessage"], _sent)
    handlers["SendMessageBatch"] = _waking(handlers["SendMessageBatch"], _sent)
    handlers["ChangeMessageVisibility"] = _waking(handlers["ChangeMessageVisibility"], _everyone)
    handlers["ChangeMessageVisibilityBatch"] = _waking(
        handlers["ChangeMessageVisibilityBatch"], _everyone
    )
    sqs._dlq_sweep = _sweeping(sqs._dlq_sweep)
    sqs.asyncio = _AsyncioForSqs()


_install()
