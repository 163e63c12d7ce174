"""Cancelling an order through the real handlers: DELETE /api/orders/{id} and the
WebSocket `cancel` action, and what the pipeline's workers do with a cancelled order."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from order_engine.orders import Status, Step
from order_engine.pipeline import Pipeline
from order_engine.records import Order
from tests.support.events import new_connection_id, ws_connect_event, ws_message_event
from tests.support.handler_stack import Stack


def delete(stack: Stack, order_id: str, key: str | None = None) -> tuple[int, dict[str, Any]]:
    return stack.cancel(order_id, key=key)


def statuses(stack: Stack, order_id: str) -> list[str]:
    return [event.to_status.value for event in stack.engine.store.get_events(order_id)]


def order(stack: Stack, order_id: str) -> Order:
    found = stack.engine.store.get_order(uuid.UUID(order_id))
    assert found is not None
    return found


def test_cancelling_a_pending_order_ends_it_cancelled_and_its_route_message_is_acked(
    fresh: Stack,
) -> None:
    order_id = fresh.place()

    status, body = delete(fresh, order_id)

    assert status == 200, body
    assert body["status"] == "cancelled" and body["id"] == order_id
    answer = fresh.deliver(Step.ROUTE.value)  # the route message written at placement
    assert answer["batchItemFailures"] == []  # acked, not retried
    assert order(fresh, order_id).route is None
    assert statuses(fresh, order_id) == ["pending", "cancelled"]


def test_cancelling_a_routing_order_means_no_transaction_is_built_and_no_swap_happens(
    fresh: Stack,
) -> None:
    order_id = fresh.place()
    fresh.deliver(Step.ROUTE.value)
    assert order(fresh, order_id).status is Status.ROUTING

    status, body = delete(fresh, order_id)

    assert (status, body["status"]) == (200, "cancelled")
    assert fresh.deliver(Step.BUILD.value)["batchItemFailures"] == []
    fresh.run(order_id)  # everything left in every queue is delivered, and acked
    assert order(fresh, order_id).transaction is None
    assert statuses(fresh, order_id) == ["pending", "routing", "cancelled"]
    assert fresh.swaps(order_id) == 0


def test_a_build_step_that_loses_the_race_to_a_cancel_builds_nothing_and_is_acked(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build step reads the order while it is routing; the owner cancels it while
    the step works: the step's conditional transition finds nothing to move, and the
    message is acknowledged, not retried."""
    build = Pipeline._build

    def cancelled_meanwhile(pipeline: Pipeline, current: Order) -> Any:
        work = build(pipeline, current)
        assert delete(fresh, order_id)[0] == 200
        return work

    # Before the first delivery: the pipeline binds its steps when it is built.
    monkeypatch.setattr(Pipeline, "_build", cancelled_meanwhile)
    order_id = fresh.place()
    fresh.deliver(Step.ROUTE.value)

    answer = fresh.deliver(Step.BUILD.value)

    assert answer["batchItemFailures"] == []
    assert fresh.receive(Step.SUBMIT.value) == []  # nothing to submit
    final = order(fresh, order_id)
    assert final.status is Status.CANCELLED and final.transaction is None
    assert statuses(fresh, order_id) == ["pending", "routing", "cancelled"]


def test_a_cancel_that_loses_the_race_to_a_step_is_refused_with_the_new_status(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = fresh.place()
    fresh.deliver(Step.ROUTE.value)
    fresh.deliver(Step.BUILD.value)

    status, body = delete(fresh, order_id)

    assert status == 409
    assert body["error"]["code"] == "not_cancellable"
    assert body["error"]["status"] == "building"
    assert "building" in body["error"]["message"]
    assert fresh.run(order_id).status in {Status.CONFIRMED, Status.FAILED}


def test_cancelling_a_cancelled_order_again_is_refused_and_changes_nothing(fresh: Stack) -> None:
    order_id = fresh.place()
    assert delete(fresh, order_id)[0] == 200

    status, body = delete(fresh, order_id)

    assert (status, body["error"]["status"]) == (409, "cancelled")
    assert statuses(fresh, order_id) == ["pending", "cancelled"]


def test_another_accounts_order_answers_exactly_like_an_unknown_one(fresh: Stack) -> None:
    order_id = fresh.place()
    stranger = fresh.engine.accounts.create_key(f"stranger-{uuid.uuid4().hex[:8]}").key
    unknown = str(uuid.uuid4())

    theirs = delete(fresh, order_id, key=stranger)
    nobodys = delete(fresh, unknown, key=stranger)

    assert theirs[0] == nobodys[0] == 404
    assert theirs[1] == json.loads(json.dumps(nobodys[1]).replace(unknown, order_id))
    assert order(fresh, order_id).status is Status.PENDING


def test_a_malformed_order_id_is_refused_naming_the_field(fresh: Stack) -> None:
    status, body = delete(fresh, "not-an-id")
    assert (status, body["error"]["field"]) == (422, "id")


def test_cancel_on_the_socket_answers_and_subscribers_see_the_cancelled_event(
    fresh: Stack,
) -> None:
    order_id = fresh.place()
    watcher, canceller = new_connection_id(), new_connection_id()
    fresh.websocket.connect(
        ws_connect_event(watcher, {"apiKey": fresh.api_key, "orderId": order_id}), None
    )
    fresh.websocket.connect(ws_connect_event(canceller, {"apiKey": fresh.api_key}), None)

    fresh.websocket.message(
        ws_message_event(canceller, {"action": "cancel", "orderId": order_id}), None
    )
    fresh.run(order_id)

    assert fresh.management.messages(canceller) == [
        {"type": "cancelled", "orderId": order_id, "status": "cancelled"}
    ]
    assert fresh.management.messages(watcher)[-1]["status"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "cancel"}, "orderId"),
        ({"action": "cancel", "orderId": "nope"}, "orderId"),
        ({"action": "cancel", "orderId": str(uuid.uuid4())}, "orderId"),
    ],
    ids=["no order id", "malformed", "unknown"],
)
def test_a_bad_cancel_on_the_socket_gets_an_error_naming_the_field(
    fresh: Stack, body: dict[str, Any], field: str
) -> None:
    connection = new_connection_id()
    fresh.websocket.connect(ws_connect_event(connection, {"apiKey": fresh.api_key}), None)

    fresh.websocket.message(ws_message_event(connection, body), None)

    [reply] = fresh.management.messages(connection)
    assert reply["type"] == "error" and reply["error"]["field"] == field


def test_the_sweeper_never_takes_a_cancelled_order_for_a_stuck_one(fresh: Stack) -> None:
    order_id = fresh.place()
    assert delete(fresh, order_id)[0] == 200
    fresh.run(order_id)
    with psycopg.connect(fresh.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE orders SET updated_at = now() - interval '1 hour' WHERE id = %s", (order_id,)
        )

    stuck = fresh.engine.outbox_store.claim_stuck(older_than_seconds=60, limit=10_000)

    assert order_id not in {str(order.id) for order in stuck}
