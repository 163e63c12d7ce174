"""A worker (or the API) dies at each point around its commit, and nothing is lost.

The crash is a `ProcessCrash` (a BaseException: no handler gets to clean up, and the
event source mapping deletes nothing, as when a Lambda container is killed).
"""

from __future__ import annotations

import psycopg
import pytest

import order_engine.store
from order_engine.messaging import Publisher
from order_engine.notify import Notifier
from order_engine.orders import Status
from order_engine.outbox import OutboxStore
from tests.faults.harness import FaultStack, ProcessCrash, crash_once
from tests.support.events import new_connection_id
from tests.support.outbox import unsent_topics


def status(stack: FaultStack, order_id: str) -> Status:
    order = stack.engine.store.get_order(order_id)
    assert order is not None
    return order.status


def unsent(stack: FaultStack, order_id: str) -> list[str]:
    return unsent_topics(stack.database_url, order_id)


def test_a_crash_after_commit_before_publish_leaves_the_row_to_the_sweeper(
    stack: FaultStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = stack.place()

    with (
        crash_once(monkeypatch, Publisher, "publish", after_commit=True) as crashed,
        pytest.raises(ProcessCrash),
    ):
        stack.deliver("route")
    assert crashed

    # The route step committed (state, event, outbox rows), then the process died.
    assert status(stack, order_id) is Status.ROUTING
    assert "build" in unsent(stack, order_id)
    # Without the relay the order goes nowhere: the route message, back after its
    # visibility timeout, is a duplicate, and the build message was never sent.
    assert stack.deliver("route", stack.receive_all("route", 1))["batchItemFailures"] == []
    assert stack.log.of(order_id)[-1].duplicate
    stack.drain_once()
    assert status(stack, order_id) is Status.ROUTING
    # A sweeper whose grace period has not passed leaves the row to the fast path…
    assert stack.new_sweeper(grace=60).relay_outbox() == 0
    assert "build" in unsent(stack, order_id)

    # …one past it publishes it, and the order finishes.
    assert stack.new_sweeper(grace=0).relay_outbox() >= 1
    assert unsent(stack, order_id) == []
    report = stack.check()
    assert report.statuses == {"confirmed": 1} or report.statuses == {"failed": 1}
    assert report.duplicates >= 1


def test_an_api_crash_after_commit_loses_no_order_even_unanswered(
    stack: FaultStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        crash_once(monkeypatch, Publisher, "publish", after_commit=True),
        pytest.raises(ProcessCrash),
    ):
        stack.post()  # the client never gets its 202

    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT order_id::text FROM outbox WHERE topic = 'route' AND sent_at IS NULL"
        ).fetchone()
    assert row is not None, "the order and its route message were committed"
    order_id = row[0]
    assert status(stack, order_id) is Status.PENDING

    stack.check([order_id])  # the sweeper publishes its route message; it finishes


def test_a_crash_after_publish_before_marking_sent_is_a_harmless_duplicate(
    stack: FaultStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = stack.place()

    with (
        crash_once(monkeypatch, OutboxStore, "mark_sent", after_commit=True),
        pytest.raises(ProcessCrash),
    ):
        stack.deliver("route")

    # The build message is on its queue, but its outbox row says it never left.
    assert status(stack, order_id) is Status.ROUTING
    assert "build" in unsent(stack, order_id)
    stack.deliver("build")
    assert status(stack, order_id) is Status.BUILDING

    # The relay sends the build message again; the worker sees a duplicate and acks it.
    assert stack.new_sweeper(grace=0).relay_outbox() >= 1
    answer = stack.deliver("build")
    assert answer["batchItemFailures"] == []
    build = [d for d in stack.log.of(order_id) if d.step == "build"]
    assert [d.result for d in build] == ["advanced", "skipped"]
    assert status(stack, order_id) is Status.BUILDING

    # The route message the crashed worker never acknowledged comes back: a duplicate.
    assert stack.deliver("route", stack.receive_all("route", 1))["batchItemFailures"] == []
    report = stack.check()
    assert report.duplicates >= 2


def test_a_crash_before_the_direct_delivery_leaves_the_notification_to_the_sweeper(
    stack: FaultStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker committed `routing`, then died before it could post the event to the
    order's subscriber, and so before its batch sent the build message: both rows,
    never marked sent, are relayed, and the subscriber still gets every event, in
    order, once."""
    order_id = stack.place()
    watcher = stack.open_connection(new_connection_id())
    assert stack.engine.subscriptions.subscribe(watcher, order_id)

    with (
        crash_once(monkeypatch, Notifier, "deliver", after_commit=True) as crashed,
        pytest.raises(ProcessCrash),
    ):
        stack.deliver("route")
    assert crashed

    assert status(stack, order_id) is Status.ROUTING
    assert unsent(stack, order_id) == ["notify", "build"]  # the batch sent nothing
    assert stack.management.messages(watcher) == []
    assert stack.new_sweeper(grace=0).relay_outbox() == 2
    assert stack.deliver("notify", stack.receive_all("notify", 1))["batchItemFailures"] == []
    assert stack.management.messages(watcher)[0]["status"] == "routing"

    assert stack.deliver("route", stack.receive_all("route", 1))["batchItemFailures"] == []
    received = {watcher: stack.management.messages(watcher)}
    report = stack.check(notifications=received)
    assert report.statuses["confirmed"] + report.statuses["failed"] == 1


def test_a_crash_before_the_steps_write_writes_nothing_and_redelivery_applies_it_once(
    stack: FaultStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = stack.place()
    stack.deliver("route")
    events_before = len(stack.engine.store.get_events(order_id))

    with (
        crash_once(monkeypatch, order_engine.store, "write_order", after_commit=False),
        pytest.raises(ProcessCrash),
    ):
        stack.deliver("build")

    assert status(stack, order_id) is Status.ROUTING  # nothing written
    assert len(stack.engine.store.get_events(order_id)) == events_before
    # The message comes back after its visibility timeout and is received again.
    messages = stack.receive_all("build", 1)
    assert int(messages[0]["Attributes"]["ApproximateReceiveCount"]) == 2
    stack.deliver("build", messages)
    assert status(stack, order_id) is Status.BUILDING
    stack.check()


def test_a_crash_after_the_swap_before_its_commit_never_swaps_twice(
    stack: FaultStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = stack.place()
    stack.drain_once(["route", "build"])
    assert status(stack, order_id) is Status.BUILDING

    # The venue has the transaction; the transition recording it never commits.
    with (
        crash_once(monkeypatch, order_engine.store, "write_order", after_commit=False),
        pytest.raises(ProcessCrash),
    ):
        stack.deliver("submit")

    assert status(stack, order_id) is Status.BUILDING
    crashed = stack.log.of(order_id)[-1]
    assert crashed.result == "crashed" and crashed.swaps == 1
    # Redelivered, submit sends the very same signed transaction: the venue knows it.
    stack.deliver("submit", stack.receive_all("submit", 1))
    assert status(stack, order_id) is Status.SUBMITTED
    assert stack.log.of(order_id)[-1].swaps == 0
    stack.check()
