"""The event source mapping's own rules, against an in-memory stand-in for SQS:
MaximumConcurrency is enforced, only successes are deleted, BatchSize is honoured."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from local_runtime.event_source_mapping import SqsPoller
from local_runtime.functions import ERROR, OK, InvocationResult, LambdaFunction
from local_runtime.specs import QueueSpec, SqsEventSpec

QUEUE = QueueSpec("Q", "q", "http://sqs/q", "arn:aws:sqs:us-east-1:1:q", {})


class FakeSqs:
    """Hands out `total` messages, records deletes. Not SQS: no visibility timeouts."""

    def __init__(self, total: int) -> None:
        self._ids = iter(f"m{i}" for i in range(total))
        self._lock = threading.Lock()
        self.deleted: list[str] = []
        self.receive_sizes: list[int] = []
        self.short_polls = 0  # receives with WaitTimeSeconds=0

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            batch = list(itertools.islice(self._ids, kwargs["MaxNumberOfMessages"]))
            self.receive_sizes.append(kwargs["MaxNumberOfMessages"])
            self.short_polls += kwargs["WaitTimeSeconds"] == 0
        if not batch and kwargs["WaitTimeSeconds"]:
            time.sleep(0.05)  # a long poll, cut short; a short one answers at once
        return {
            "Messages": [
                {
                    "MessageId": i,
                    "ReceiptHandle": f"rh-{i}",
                    "Body": i,
                    "MD5OfBody": "",
                    "Attributes": {"ApproximateReceiveCount": "1"},
                }
                for i in batch
            ]
        }

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        with self._lock:
            self.deleted += [e["ReceiptHandle"].removeprefix("rh-") for e in Entries]
        return {"Successful": Entries}


class IdleSandboxes:
    """A function's sandboxes as the poller sees them: how many are idle (and none may
    start quickly enough to count)."""

    def __init__(self, idle_count: int) -> None:
        self.idle_count = idle_count

    def ready_within(self, seconds: float) -> int:
        return self.idle_count


class InProcessFunction:
    """What the poller needs of a function (a name, invoke, its idle sandboxes), with the
    handler run right here: these tests are about the mapping, not about sandboxes."""

    name = "F"
    sandboxes = IdleSandboxes(idle_count=100)  # no sandbox to wait for

    def __init__(self, body: str) -> None:
        self.namespace: dict[str, Any] = {}
        exec(body, self.namespace)  # noqa: S102 (the tests' own handler code)

    def invoke(
        self,
        event: Any,
        describe: Callable[[InvocationResult], str],
        *,
        started: Callable[[], None] | None = None,
    ) -> InvocationResult:
        if started is not None:
            started()  # no sandbox to wait for
        try:
            result = InvocationResult("F", "r", OK, value=self.namespace["h"](event, None))
        except Exception as error:
            result = InvocationResult("F", "r", ERROR, error=error)
        describe(result)
        return result


def make_function(tmp_path: Path, body: str) -> LambdaFunction:
    return cast(LambdaFunction, InProcessFunction(body))


def run_poller(
    function: LambdaFunction,
    mapping: SqsEventSpec,
    sqs: FakeSqs,
    seconds: float,
    wait_seconds: int = 0,
) -> SqsPoller:
    poller = SqsPoller(
        function, mapping, QUEUE, lambda: sqs, region="us-east-1", wait_seconds=wait_seconds
    )
    poller.start()
    time.sleep(seconds)
    poller.stop_polling()
    poller.join(3)
    return poller


def test_maximum_concurrency_bounds_the_invocations_running_at_once(tmp_path: Path) -> None:
    function = make_function(
        tmp_path,
        (
            "import threading, time\n"
            "lock = threading.Lock(); running = 0; peak = 0\n"
            "def h(event, context):\n"
            "    global running, peak\n"
            "    with lock:\n"
            "        running += 1; peak = max(peak, running)\n"
            "    time.sleep(0.1)\n"
            "    with lock:\n"
            "        running -= 1\n"
            "    return peak\n"
        ),
    )
    sqs = FakeSqs(total=40)
    mapping = SqsEventSpec("E", QUEUE.arn, batch_size=1, maximum_concurrency=3)
    poller = run_poller(function, mapping, sqs, seconds=1.0)
    assert poller.max_running_seen == 3  # reached, never exceeded
    assert 10 <= len(sqs.deleted) <= 40


def test_only_the_messages_that_succeeded_are_deleted(tmp_path: Path) -> None:
    function = make_function(
        tmp_path,
        (
            "def h(event, context):\n"
            "    return {'batchItemFailures': [{'itemIdentifier': r['messageId']}\n"
            "            for r in event['Records'] if r['messageId'] in ('m1', 'm3')]}\n"
        ),
    )
    sqs = FakeSqs(total=5)
    mapping = SqsEventSpec("E", QUEUE.arn, batch_size=5, report_batch_item_failures=True)
    run_poller(function, mapping, sqs, seconds=0.5)
    assert sorted(sqs.deleted) == ["m0", "m2", "m4"]


def test_a_function_error_deletes_nothing(tmp_path: Path) -> None:
    function = make_function(tmp_path, "def h(event, context):\n    raise ValueError('no')\n")
    sqs = FakeSqs(total=3)
    run_poller(function, SqsEventSpec("E", QUEUE.arn, batch_size=3), sqs, seconds=0.5)
    assert sqs.deleted == []


def test_batches_larger_than_ten_are_gathered_within_the_window(tmp_path: Path) -> None:
    function = make_function(
        tmp_path, ("sizes = []\ndef h(event, context):\n    sizes.append(len(event['Records']))\n")
    )
    sqs = FakeSqs(total=25)
    mapping = SqsEventSpec("E", QUEUE.arn, batch_size=25, batching_window=0.3)
    run_poller(function, mapping, sqs, seconds=0.8)
    assert sqs.receive_sizes[:3] == [10, 10, 5]  # at most 10 per ReceiveMessage
    assert sorted(sqs.deleted) == sorted(f"m{i}" for i in range(25))
    assert cast(InProcessFunction, function).namespace["sizes"][0] == 25


def test_a_window_with_nothing_more_coming_is_waited_out_not_polled(tmp_path: Path) -> None:
    function = make_function(
        tmp_path, ("sizes = []\ndef h(event, context):\n    sizes.append(len(event['Records']))\n")
    )
    sqs = FakeSqs(total=1)
    mapping = SqsEventSpec("E", QUEUE.arn, batch_size=10, batching_window=1.0)
    run_poller(function, mapping, sqs, seconds=1.5, wait_seconds=1)  # long polls
    assert cast(InProcessFunction, function).namespace["sizes"] == [1]  # after the window
    # The window's own receives: not one per turn of a loop for a second.
    assert sqs.short_polls <= 2, sqs.short_polls


class WatchedSqs(FakeSqs):
    """FakeSqs that notes which loop (thread) made each receive, and what it got."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        self.receives: list[tuple[str, int]] = []  # (thread, messages received)

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        response = super().receive_message(**kwargs)
        self.receives.append((threading.current_thread().name, len(response["Messages"])))
        return response

    def add(self, total: int) -> None:
        self._ids = iter(f"m{i}" for i in range(total))


def test_extra_receive_loops_rest_while_the_queue_is_quiet_and_all_read_it_once_active(
    tmp_path: Path,
) -> None:
    """Lambda's five pollers per mapping (poller_scaling.py): while the queue is quiet
    only the first loop polls; once it receives, the others read the queue too."""
    function = make_function(
        tmp_path, "import time\ndef h(event, context):\n    time.sleep(0.05)\n"
    )
    sqs = WatchedSqs(total=0)
    mapping = SqsEventSpec("E", QUEUE.arn, batch_size=1, maximum_concurrency=10)
    poller = SqsPoller(function, mapping, QUEUE, lambda: sqs, region="us-east-1")
    poller.start()
    try:
        time.sleep(0.5)  # every loop has come back empty from a long poll by now
        sqs.receives.clear()
        time.sleep(0.5)
        assert len({loop for loop, _ in sqs.receives}) == 1  # the first loop alone
        sqs.add(40)  # the queue becomes active
        time.sleep(1.0)
        receivers = {loop for loop, got in sqs.receives if got}
        assert len(receivers) == 5, sqs.receives  # Lambda's five pollers
        assert sorted(sqs.deleted, key=lambda i: int(i[1:])) == [f"m{i}" for i in range(40)]
    finally:
        poller.stop_polling()
        poller.join(3)


def test_without_an_idle_sandbox_to_spare_the_first_loop_alone_receives(
    tmp_path: Path,
) -> None:
    """What the other loops receive must start at once (a batch waiting in the runtime for
    a sandbox outwaits its visibility timeout): with one idle sandbox, which loop 0's
    batch may need, only loop 0 receives, as a mapping with one loop did."""
    function = make_function(
        tmp_path, "import time\ndef h(event, context):\n    time.sleep(0.05)\n"
    )
    cast(Any, function).sandboxes = IdleSandboxes(idle_count=1)
    sqs = WatchedSqs(total=40)
    mapping = SqsEventSpec("E", QUEUE.arn, batch_size=1, maximum_concurrency=10)
    run_poller(function, mapping, sqs, seconds=1.0, wait_seconds=1)
    assert {loop for loop, got in sqs.receives if got} == {"esm-F-E-0"}
    assert len(sqs.deleted) >= 10  # loop 0 went on receiving
