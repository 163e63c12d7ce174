"""The sweeper: it publishes what a crash left in the outbox, re-drives orders that
stopped moving, and running it again, or twice at once, changes nothing more; one
sweep runs at a time, and one that fails gives its turn back (in the manner of River's
RescuesStuckJobs / CanRunMultipleTimes tests and Oban's lifeline).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from botocore.exceptions import EndpointConnectionError

from order_engine.messaging import Publisher
from order_engine.orders import Status
from order_engine.sweeper import Sweeper, SweepReport
from tests.faults.harness import FaultStack
from tests.support.outbox import unsent_topics


def queued(stack: FaultStack, topic: str) -> int:
    attributes = stack.sqs.get_queue_attributes(
        QueueUrl=stack.queue_urls[topic], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def sql(stack: FaultStack, query: str, *params: Any) -> None:
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(query, params)


def place_unpublished(stack: FaultStack, monkeypatch: pytest.MonkeyPatch, count: int) -> list[str]:
    """Orders accepted while SQS refused every publish: their route rows wait unsent."""

    def refuse(*args: Any, **kwargs: Any) -> list[int]:
        raise EndpointConnectionError(endpoint_url="http://sqs.invalid")

    with monkeypatch.context() as patch:
        patch.setattr(Publisher, "publish", refuse)
        return [stack.place() for _ in range(count)]


# Only rows aged by place_overdue are this old: the fault suite's database lives for one
# session, so no other test's leftovers can be claimed by a sweeper with this grace.
OVERDUE_GRACE = 30 * 60.0
NEVER_STUCK = 10.0**6


def place_overdue(stack: FaultStack, monkeypatch: pytest.MonkeyPatch, count: int) -> list[str]:
    """Unpublished orders whose outbox rows are older than OVERDUE_GRACE."""
    order_ids = place_unpublished(stack, monkeypatch, count)
    sql(
        stack,
        "UPDATE outbox SET created_at = now() - interval '1 hour' WHERE order_id = ANY(%s::uuid[])",
        order_ids,
    )
    return order_ids


def overdue_sweeper(stack: FaultStack) -> Sweeper:
    """A sweeper that sees place_overdue's rows and nothing of other tests."""
    return stack.new_sweeper(grace=OVERDUE_GRACE, stuck=NEVER_STUCK)


def sweep_in_turn(sweeper: Sweeper, timeout: float = 10.0) -> SweepReport:
    """Sweep once the turn is free. This process's own scheduled sweeper (fired by a
    runtime another test module left running, see conftest.NEVER) may hold it for a
    moment, and then a sweep started at the same time rightly returns skipped."""
    deadline = time.monotonic() + timeout
    while (report := sweeper.sweep()).skipped:
        assert time.monotonic() < deadline, "the sweep turn stayed taken"
        time.sleep(0.05)
    return report


def unsent(stack: FaultStack, order_id: str) -> list[str]:
    return unsent_topics(stack.database_url, order_id)


def test_an_unsent_row_past_the_grace_period_is_published_and_a_younger_one_is_not(
    stack: FaultStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, young = place_unpublished(stack, monkeypatch, 2)
    sql(
        stack,
        "UPDATE outbox SET created_at = now() - interval '5 minutes' WHERE order_id = %s",
        old,
    )
    sweeper = stack.new_sweeper(grace=60)

    assert sweeper.relay_outbox() == 1

    assert unsent(stack, old) == [] and unsent(stack, young) == ["route"]
    assert queued(stack, "route") == 1
    assert sweeper.relay_outbox() == 0  # twice: nothing more
    assert queued(stack, "route") == 1
    stack.check()


def test_a_stuck_order_is_redriven_once_and_finishes(stack: FaultStack) -> None:
    """Its build message was lost for good (a purged queue, a DLQ nobody replays):
    nothing would ever move it again but the sweeper."""
    stuck, moving = stack.place(), stack.place()
    stack.deliver("route")
    lost = stack.receive_all("build", 2)
    for message in lost:  # lost: deleted without being handled
        stack.sqs.delete_message(
            QueueUrl=stack.queue_urls["build"], ReceiptHandle=message["ReceiptHandle"]
        )
    sql(stack, "UPDATE orders SET updated_at = now() - interval '10 minutes' WHERE id = %s", stuck)
    sweeper = stack.new_sweeper(stuck=300)

    assert sweeper.redrive_stuck() == 1
    assert queued(stack, "build") == 1
    # Twice: the order was just re-driven, its message is on its way; nothing more.
    assert sweeper.sweep().redriven == 0
    assert queued(stack, "build") == 1

    stack.deliver("build")
    order = stack.engine.store.get_order(moving)
    assert order is not None and order.status is Status.ROUTING  # not stuck (yet): left alone
    sql(stack, "UPDATE orders SET updated_at = now() - interval '10 minutes' WHERE id = %s", moving)
    stack.check()  # now it is, and the sweeper re-drives it too


def test_two_sweepers_claiming_at_once_publish_every_row_once_and_redrive_every_order_once(
    stack: FaultStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claims themselves, without the turn that keeps whole sweeps apart: they must
    hold on their own (a relay or re-drive run by hand, an older sweeper mid-deploy)."""
    unpublished = place_unpublished(stack, monkeypatch, 12)
    stuck = [stack.place() for _ in range(6)]
    stack.deliver("route")  # the stuck ones (and only they) go to routing…
    for message in stack.receive_all("build", len(stuck)):  # …and lose their build message
        stack.sqs.delete_message(
            QueueUrl=stack.queue_urls["build"], ReceiptHandle=message["ReceiptHandle"]
        )
    sql(stack, "UPDATE outbox SET created_at = now() - interval '5 minutes'")
    sql(
        stack,
        "UPDATE orders SET updated_at = now() - interval '10 minutes' WHERE id = ANY(%s::uuid[])",
        stuck,
    )
    sweepers = [stack.new_sweeper(grace=60, stuck=300) for _ in range(2)]
    barrier = threading.Barrier(2, timeout=10)
    reports: list[Any] = []

    def sweep(index: int) -> None:
        barrier.wait()
        sweeper = sweepers[index]
        reports.append(SweepReport(sweeper.relay_outbox(), sweeper.redrive_stuck()))

    threads = [threading.Thread(target=sweep, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sum(r.published for r in reports) == len(unpublished)
    assert sum(r.redriven for r in reports) == len(stuck)
    assert queued(stack, "route") == len(unpublished)
    assert queued(stack, "build") == len(stuck)
    stack.check()


def test_a_sweep_started_while_another_runs_returns_at_once_and_the_next_one_runs(
    stack: FaultStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    unpublished = place_overdue(stack, monkeypatch, 3)
    publishing, release = threading.Event(), threading.Event()
    publish = Publisher.publish

    def slow_publish(self: Publisher, rows: Any) -> list[int]:  # a sweep through slow SQS
        publishing.set()
        assert release.wait(timeout=10)
        return publish(self, rows)

    monkeypatch.setattr(Publisher, "publish", slow_publish)
    first: list[Any] = []  # the running sweep's report, or what it raised

    def sweep_first() -> None:
        try:
            first.append(sweep_in_turn(overdue_sweeper(stack)))
        except Exception as exc:
            first.append(exc)

    running = threading.Thread(target=sweep_first)
    running.start()
    try:
        assert publishing.wait(timeout=10), f"the first sweep never published: {first}"

        started = time.monotonic()
        late = overdue_sweeper(stack).sweep()

        assert late == SweepReport(published=0, redriven=0, skipped=True)
        assert time.monotonic() - started < 1.0  # at once: it did not wait for the turn
    finally:
        release.set()
        running.join(timeout=10)
    assert first == [SweepReport(published=len(unpublished), redriven=0)]
    assert queued(stack, "route") == len(unpublished)
    sweep_in_turn(overdue_sweeper(stack), timeout=1.0)  # the turn is free again, or this fails
    stack.check()


def test_a_sweep_that_fails_gives_its_turn_back(
    stack: FaultStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    unpublished = place_overdue(stack, monkeypatch, 2)

    def crash(*args: Any, **kwargs: Any) -> list[int]:
        raise RuntimeError("the sweeper's container died mid-sweep")

    with monkeypatch.context() as patch:
        patch.setattr(Publisher, "publish", crash)
        with pytest.raises(RuntimeError):
            sweep_in_turn(overdue_sweeper(stack))

    report = sweep_in_turn(overdue_sweeper(stack), timeout=1.0)  # not held by the crashed one

    assert report == SweepReport(published=len(unpublished), redriven=0)
    assert queued(stack, "route") == len(unpublished)
    stack.check()
