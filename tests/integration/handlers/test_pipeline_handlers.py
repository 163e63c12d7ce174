"""The step workers and the notifier, invoked as Lambda invokes them, over real
PostgreSQL and real SQS (moto server)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from chalice.test import Client

from order_engine.dex.simulation import Fault, Script, simulated_venues
from order_engine.messaging import NOTIFY_TOPIC, NotifyMessage
from order_engine.orders import Status, Step
from order_engine.wiring import engine
from tests.integration.handlers.conftest import HAPPY
from tests.support.aws import ManagementApi
from tests.support.events import ws_connect_event
from tests.support.handler_stack import ORDER, Stack


def use_faults(**faults: Fault) -> None:
    """Replace the process's venues by ones with these faults (as a flaky network would)."""
    engine().use_venues(
        lambda settings, ledger: simulated_venues(settings.dex, ledger, faults=faults)
    )


def statuses(stack: Stack, order_id: str) -> list[str]:
    return [event.to_status.value for event in stack.engine.store.get_events(order_id)]


def test_the_happy_path_walks_every_state_in_order_and_the_timeline_agrees(fresh: Stack) -> None:
    order_id = fresh.place()
    order = fresh.run(order_id)

    assert order.status is Status.CONFIRMED
    events = fresh.engine.store.get_events(order_id)
    assert [e.to_status for e in events] == HAPPY
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    with Client(fresh.api.app) as client:
        body = json.loads(client.http.get(f"/api/orders/{order_id}", headers=fresh.auth).body)
    assert [e["status"] for e in body["events"]] == [s.value for s in HAPPY]
    assert body["txSignature"] == events[3].data["txSignature"]
    assert body["executedPrice"] == events[4].data["executedPrice"]
    routing = events[1].data
    assert {q["venue"] for q in routing["quotes"]} == {"raydium", "meteora"}
    assert routing["venue"] in {"raydium", "meteora"} and routing["reason"]
    assert body["route"]["venue"] == routing["venue"]


def test_a_duplicate_step_message_changes_nothing(fresh: Stack) -> None:
    order_id = fresh.place()
    fresh.deliver("route")  # pending -> routing
    before = fresh.engine.store.get_order(order_id)
    duplicate = {"v": 1, "orderId": order_id, "step": "route"}
    fresh.sqs.send_message(QueueUrl=fresh.queue_urls["route"], MessageBody=json.dumps(duplicate))

    answer = fresh.deliver("route")

    assert answer["batchItemFailures"] == []  # acked, not retried
    after = fresh.engine.store.get_order(order_id)
    assert after == before
    assert statuses(fresh, order_id) == ["pending", "routing"]


def test_an_out_of_order_message_is_retried_and_changes_nothing(fresh: Stack) -> None:
    order_id = fresh.place()
    early = {"v": 1, "orderId": order_id, "step": "confirm"}
    fresh.sqs.send_message(QueueUrl=fresh.queue_urls["confirm"], MessageBody=json.dumps(early))

    answer = fresh.deliver("confirm")

    assert len(answer["batchItemFailures"]) == 1  # comes back later
    assert statuses(fresh, order_id) == ["pending"]
    assert fresh.run(order_id).status is Status.CONFIRMED
    assert statuses(fresh, order_id) == [s.value for s in HAPPY]


def test_a_stale_message_for_a_finished_order_changes_nothing(fresh: Stack) -> None:
    order_id = fresh.place()
    fresh.run(order_id)
    for step in Step:
        body = {"v": 1, "orderId": order_id, "step": step.value}
        fresh.sqs.send_message(QueueUrl=fresh.queue_urls[step.value], MessageBody=json.dumps(body))
        assert fresh.deliver(step.value)["batchItemFailures"] == []
    assert statuses(fresh, order_id) == [s.value for s in HAPPY]


def test_two_transient_failures_then_success_confirms_with_the_attempts_recorded(
    fresh: Stack,
) -> None:
    use_faults(
        raydium=Fault(confirm=Script.first(2, "unavailable")),
        meteora=Fault(confirm=Script.first(2, "unavailable")),
    )
    order_id = fresh.place()

    started = time.monotonic()
    order = fresh.run(order_id)

    assert order.status is Status.CONFIRMED
    confirmed = fresh.engine.store.get_events(order_id)[-1]
    assert confirmed.data["attempts"] == 3
    assert order.last_error  # the reason of the retries stays visible
    assert time.monotonic() - started >= 3  # backoff: 1 s, then 2 s


def test_three_transient_failures_fail_the_order_with_the_reason(fresh: Stack) -> None:
    use_faults(raydium=Fault.down(), meteora=Fault.down())
    order_id = fresh.place()

    order = fresh.run(order_id)

    assert order.status is Status.FAILED
    assert order.failure_reason and "3 attempts" in order.failure_reason
    failed = fresh.engine.store.get_events(order_id)[-1]
    assert failed.data["attempts"] == 3 and failed.data["step"] == "route"
    assert statuses(fresh, order_id) == ["pending", "failed"]


def test_slippage_beyond_the_tolerance_fails_at_once(fresh: Stack) -> None:
    # A price impact above 1 bp is certain for this size: refused at quote time.
    order_id = fresh.place({**ORDER, "amount": "5000", "slippageBps": 1})

    order = fresh.run(order_id)

    assert order.status is Status.FAILED
    assert "slippage" in (order.failure_reason or "").lower()
    assert fresh.engine.store.get_events(order_id)[-1].data["attempts"] == 1


def test_partial_batch_responses_list_exactly_the_failed_message_ids(fresh: Stack) -> None:
    good = [fresh.place() for _ in range(3)]
    for body in ("not json", json.dumps({"v": 1, "orderId": "x", "step": "teleport"}), "\u0000"):
        fresh.sqs.send_message(QueueUrl=fresh.queue_urls["route"], MessageBody=body)
    messages: list[dict[str, Any]] = []
    while len(messages) < 6:
        messages += fresh.receive("route")
    poison = {
        m["MessageId"] for m in messages if "orderId" not in m["Body"] or "teleport" in m["Body"]
    }

    answer = fresh.deliver("route", messages)

    assert {item["itemIdentifier"] for item in answer["batchItemFailures"]} == poison
    for order_id in good:
        assert statuses(fresh, order_id) == ["pending", "routing"]


@pytest.mark.parametrize("topic", ["route", "notify"])
# Escaped in the JSON, a NUL reaches the decoder inside the id (issue 17).
@pytest.mark.parametrize("bad_id", ["not-a-uuid", "<order>\u0000"], ids=["text", "nul"])
def test_a_message_whose_order_id_is_not_a_uuid_is_poison_not_acked(
    fresh: Stack, topic: str, bad_id: str
) -> None:
    # No order can ever have such an id: acking it would hide a producer's bug, and
    # retrying it for a visibility timeout each time would only delay the DLQ.
    bad_id = bad_id.replace("<order>", fresh.place())
    body = {"v": 1, "orderId": bad_id, **({"step": topic} if topic != "notify" else {})}
    fresh.sqs.send_message(QueueUrl=fresh.queue_urls[topic], MessageBody=json.dumps(body))
    messages = [m for m in fresh.receive(topic, wait=2) if m["Body"] == json.dumps(body)]

    answer = fresh.deliver(topic, messages)

    assert [item["itemIdentifier"] for item in answer["batchItemFailures"]] == [
        messages[0]["MessageId"]
    ]
    # Made visible again at once, so the queue's redrive parks it within seconds.
    again = fresh.receive(topic, wait=2)
    assert [m["MessageId"] for m in again] == [messages[0]["MessageId"]]


def notify(stack: Stack, *order_ids: str) -> None:
    """Ask the notifier to bring each order's subscribers up to date, as the queue does
    when a worker could not deliver an event itself."""
    for order_id in order_ids:
        payload = NotifyMessage(uuid.UUID(order_id)).to_payload()
        stack.engine.publisher.send(NOTIFY_TOPIC, payload)


def test_the_notifier_sends_a_snapshot_then_each_event_in_order(fresh: Stack) -> None:
    order_id = fresh.place()
    connection = f"c-{uuid.uuid4().hex[:8]}"
    fresh.websocket.connect(ws_connect_event(connection, headers=fresh.auth), None)
    fresh.websocket.message(
        {
            "requestContext": {
                "connectionId": connection,
                "domainName": "x",
                "stage": "v1",
                "apiId": "abc",
                "routeKey": "$default",
                "messageId": "m1",
            },
            "body": json.dumps({"action": "subscribe", "orderId": order_id}),
        },
        None,
    )

    fresh.run(order_id)

    received = fresh.management.messages(connection)
    assert received[0]["type"] == "snapshot" and received[0]["status"] == "pending"
    seqs = [e["seq"] for e in received[0]["events"]] + [m["seq"] for m in received[1:]]
    assert seqs == [1, 2, 3, 4, 5]
    assert [m["status"] for m in received[1:]] == [s.value for s in HAPPY[1:]]
    assert received[-1]["data"]["executedPrice"]


def test_a_gone_connection_is_dropped_and_the_others_still_get_their_events(
    fresh: Stack,
) -> None:
    order_id = fresh.place()
    connections = [f"c-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for connection in connections:
        assert fresh.engine.subscriptions.subscribe(fresh.open_connection(connection), order_id)
    fresh.management.gone.add(connections[1])
    notify(fresh, order_id)

    answer = fresh.deliver("notify")

    assert answer["batchItemFailures"] == []  # a gone client is not a failure
    subscribers = {c for c, _ in fresh.engine.subscriptions.subscribers(order_id)}
    assert subscribers == {connections[0], connections[2]}
    assert fresh.management.messages(connections[0])[0]["type"] == "snapshot"
    assert fresh.management.messages(connections[2])[0]["type"] == "snapshot"


def test_a_throttled_or_stalled_subscriber_fails_alone_and_holds_nothing(
    fresh: Stack, migrated_url: str
) -> None:
    """One order's subscribers: one throttled, one that never takes its post (a client
    not reading), one fine; and another order in the same batch. Only the throttled
    subscriber's order is retried; the stalled one is dropped; every other subscriber
    has its snapshot; and no database session waits idle in a transaction meanwhile."""
    order_id, other_order_id = fresh.place(), fresh.place()
    throttled, stalled, fine, other = (
        fresh.open_connection(f"{prefix}-{uuid.uuid4().hex[:8]}")
        for prefix in ("a-throttled", "b-stalled", "c-fine", "d-other")
    )
    for connection in (throttled, stalled, fine):
        assert fresh.engine.subscriptions.subscribe(connection, order_id)
    assert fresh.engine.subscriptions.subscribe(other, other_order_id)
    fresh.management.throttled.add(throttled)
    fresh.management.stalled.add(stalled)
    notify(fresh, order_id, other_order_id)
    messages = fresh.receive("notify")
    assert len(messages) == 2
    idle_in_transaction: list[int] = []
    polling = threading.Event()

    def poll() -> None:
        with psycopg.connect(migrated_url, autocommit=True) as conn:
            while not polling.is_set():
                idle_in_transaction.append(
                    conn.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE state LIKE 'idle in transaction%'"
                        " AND now() - state_change > interval '1 second'"
                    ).fetchone()[0]  # type: ignore[index]
                )
                time.sleep(0.1)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        started = time.monotonic()
        answer = fresh.deliver("notify", messages)
        took = time.monotonic() - started
    finally:
        polling.set()
        poller.join()

    retried = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
    mine = next(m["MessageId"] for m in messages if order_id in m["Body"])
    assert retried == {mine}
    assert took < ManagementApi.STALL_SECONDS  # the stalled post was given up
    assert fresh.management.messages(fine)[0]["type"] == "snapshot"
    assert fresh.management.messages(other)[0]["type"] == "snapshot"
    subscribers = dict(fresh.engine.subscriptions.subscribers(order_id))
    assert stalled not in subscribers  # dropped: it cannot keep up
    assert subscribers[throttled] == 0  # its events wait for the retry
    assert subscribers[fine] > 0
    assert max(idle_in_transaction) == 0


SCHEDULED_EVENT = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-12-02T05:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/order-engine-sweeper"],
    "detail": {},
}


def test_the_scheduled_sweeper_answers_skipped_while_another_sweep_holds_the_turn(
    fresh: Stack,
) -> None:
    deadline = time.monotonic() + 10  # a runtime left running elsewhere may be sweeping
    while True:
        with fresh.engine.outbox_store.sweep_turn() as mine:
            if mine:
                held = fresh.sweeper.sweep(SCHEDULED_EVENT, None)
                break
        assert time.monotonic() < deadline, "the sweep turn stayed taken"
        time.sleep(0.05)

    # The answer also says whether it seeded the price watch's tick (not the sweep's turn).
    swept = {key: held[key] for key in ("published", "redriven", "skipped")}
    assert swept == {"published": 0, "redriven": 0, "skipped": True}
    answers = [fresh.sweeper.sweep(SCHEDULED_EVENT, None) for _ in range(20)]
    assert any(answer["skipped"] is False for answer in answers)  # the turn came back
