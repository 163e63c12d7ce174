"""What one order costs PostgreSQL, step by step, over the real handlers: the statements
of placing it, of a WebSocket that connects, subscribes and leaves, and of each pipeline
step with that subscriber following (docs/benchmarks.md adds them up per order)."""

from __future__ import annotations

import json

from tests.support.events import (
    new_connection_id,
    ws_connect_event,
    ws_disconnect_event,
    ws_message_event,
)
from tests.support.handler_stack import ORDER, Stack
from tests.support.statements import counted_statements


def test_an_order_followed_over_its_own_socket_costs_these_statements(fresh: Stack) -> None:
    database = fresh.engine.database
    assert fresh.engine.settings.rate_limit_per_minute > 0  # placing counts the request
    counts: dict[str, int] = {}

    with counted_statements(database) as statements:
        status, body = fresh.post(ORDER)
    assert status == 202, body
    order_id = str(body["orderId"])
    counts["place"] = statements[0]

    connection = new_connection_id()
    with counted_statements(database) as statements:
        answer = fresh.websocket.connect(
            ws_connect_event(connection, {"apiKey": fresh.api_key}), None
        )
    assert answer["statusCode"] == 200
    counts["$connect"] = statements[0]

    subscribe = {"action": "subscribe", "orderId": order_id}
    with counted_statements(database) as statements:
        fresh.websocket.message(ws_message_event(connection, json.dumps(subscribe)), None)
    counts["subscribe"] = statements[0]

    for step in ("route", "build", "submit", "confirm"):
        messages = fresh.receive(step)
        assert len(messages) == 1, step
        with counted_statements(database) as statements:
            assert fresh.deliver(step, messages)["batchItemFailures"] == []
        counts[step] = statements[0]

    with counted_statements(database) as statements:
        fresh.websocket.disconnect(ws_disconnect_event(connection), None)
    counts["$disconnect"] = statements[0]

    statuses = [m.get("status") for m in fresh.management.messages(connection)]
    assert statuses == ["pending", "routing", "building", "submitted", "confirmed"]
    assert fresh.receive("notify") == []
    # Placing: the key checked and the request counted against its rate limit (one
    # statement), the order with its outbox row, the outbox row marked sent. Each step:
    # its order's read, its work's (submit and confirm ask the simulated chain), the
    # transition (which also reads who lacks its event), and the statement that closes
    # the batch.
    assert counts == {
        "place": 3,
        "$connect": 1,
        "subscribe": 2,
        "route": 3,
        "build": 3,
        "submit": 4,
        "confirm": 4,
        "$disconnect": 1,
    }
