"""The HTTP and WebSocket handlers, driven through Chalice's own REST v1 event converter
and real-shaped WebSocket events: the answers users see, and that bad input writes nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from chalice.test import Client

from tests.support.events import (
    new_connection_id,
    ws_connect_event,
    ws_disconnect_event,
    ws_message_event,
)
from tests.support.handler_stack import ORDER, Stack, bearer

JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def http(fresh: Stack) -> Iterator[Client]:
    with Client(fresh.api.app) as client:
        yield client


@pytest.fixture
def auth(fresh: Stack) -> dict[str, str]:
    """The Authorization header of the session's own API key."""
    return fresh.auth


def row_counts(url: str) -> dict[str, int]:
    tables = ("orders", "order_events", "outbox", "idempotency_keys", "subscriptions")
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # type: ignore[index]


def post(http: Client, body: str | bytes, headers: dict[str, str] | None = None) -> Any:
    return http.http.post(
        "/api/orders/execute", headers={**JSON_HEADERS, **(headers or {})}, body=body
    )


def placed_order(stack: Stack, key: str | None = None) -> str:
    """Place an order with `key` (default: the session's) and return its id."""
    with Client(stack.api.app) as client:
        response = post(client, json.dumps(ORDER), bearer(key or stack.api_key))
    assert response.status_code == 202, response.body
    return str(json.loads(response.body)["orderId"])


def test_an_accepted_order_answers_202_with_its_id_status_and_websocket_url(
    http: Client, auth: dict[str, str]
) -> None:
    response = post(http, json.dumps(ORDER), auth)
    body = json.loads(response.body)
    assert response.status_code == 202
    assert body["status"] == "pending"
    assert body["wsUrl"] == f"ws://127.0.0.1:3001/v1?orderId={body['orderId']}"


def test_the_same_idempotency_key_and_body_return_the_same_order(
    http: Client, migrated_url: str, auth: dict[str, str]
) -> None:
    key = str(uuid.uuid4())
    first = post(http, json.dumps(ORDER), {**auth, "Idempotency-Key": key})
    before = row_counts(migrated_url)
    again = post(http, json.dumps({**ORDER, "amount": 1.25}), {**auth, "Idempotency-Key": key})

    assert again.status_code == 202
    assert json.loads(again.body)["orderId"] == json.loads(first.body)["orderId"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert row_counts(migrated_url) == before


def test_the_same_idempotency_key_with_another_body_is_a_conflict(
    http: Client, migrated_url: str, auth: dict[str, str]
) -> None:
    key = str(uuid.uuid4())
    post(http, json.dumps(ORDER), {**auth, "Idempotency-Key": key})
    before = row_counts(migrated_url)
    response = post(http, json.dumps({**ORDER, "amount": "2"}), {**auth, "Idempotency-Key": key})

    assert response.status_code == 409
    assert json.loads(response.body)["error"]["code"] == "idempotency_conflict"
    assert row_counts(migrated_url) == before


BAD_BODIES: list[tuple[str, str | bytes, int, str | None]] = [
    ("not JSON", "{", 400, None),
    ("a JSON array", "[]", 400, None),
    ("NaN literal", '{"type":"market","tokenIn":"SOL","tokenOut":"USDC","amount":NaN}', 400, None),
    ("empty body", "", 400, None),
    ("invalid UTF-8", b"\xff\xfe{", 400, None),
    ("over 16 KB", json.dumps({**ORDER, "pad": "x" * 20_000}), 413, None),
    ("negative amount", json.dumps({**ORDER, "amount": -1}), 422, "amount"),
    ("amount 1e309", json.dumps({**ORDER, "amount": "1e309"}), 422, "amount"),
    ("amount as bool", json.dumps({**ORDER, "amount": True}), 422, "amount"),
    ("unknown token", json.dumps({**ORDER, "tokenOut": "DOGE"}), 422, "tokenOut"),
    ("SQL in a token", json.dumps({**ORDER, "tokenIn": "'; DROP TABLE orders;--"}), 422, "tokenIn"),
    ("NUL in a token", json.dumps({**ORDER, "tokenIn": "SOL\u0000"}), 422, "tokenIn"),
    ("emoji token", json.dumps({**ORDER, "tokenIn": "\U0001f680"}), 422, "tokenIn"),
    ("extra field", json.dumps({**ORDER, "price": 1}), 422, "price"),
    ("string slippage", json.dumps({**ORDER, "slippageBps": "1"}), 422, "slippageBps"),
]


@pytest.mark.parametrize(
    ("body", "status", "field"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
def test_bad_http_input_gets_a_clear_error_and_writes_nothing(
    http: Client,
    migrated_url: str,
    auth: dict[str, str],
    body: str | bytes,
    status: int,
    field: str | None,
) -> None:
    before = row_counts(migrated_url)
    response = post(http, body, auth)

    assert response.status_code == status
    error = json.loads(response.body)["error"]
    assert error["message"]
    assert error.get("field") == field
    assert row_counts(migrated_url) == before


@pytest.mark.parametrize("key", ["", "k" * 201, "a\u0000b", "a\tb", "\x1b[31m", "a\x7fb", "a\x85b"])
def test_a_bad_idempotency_key_is_refused(
    http: Client, migrated_url: str, auth: dict[str, str], key: str
) -> None:
    before = row_counts(migrated_url)
    response = post(http, json.dumps(ORDER), {**auth, "Idempotency-Key": key})
    assert response.status_code == 422
    assert json.loads(response.body)["error"]["field"] == "Idempotency-Key"
    assert row_counts(migrated_url) == before


@pytest.mark.parametrize(
    ("order_id", "status"),
    [
        # An id of its own: pytest -n N needs every worker to collect the same ids.
        pytest.param(str(uuid.uuid4()), 404, id="unknown-404"),
        ("not-a-uuid", 422),
        ("1' OR '1'='1", 422),
    ],
)
def test_reading_an_unknown_or_malformed_order_id(
    http: Client, auth: dict[str, str], order_id: str, status: int
) -> None:
    response = http.http.get(f"/api/orders/{order_id}", headers=auth)
    assert response.status_code == status
    assert json.loads(response.body)["error"]["field"] == "id"


def test_health_reports_each_dependency(http: Client) -> None:
    response = http.http.get("/health")
    assert response.status_code == 200
    assert json.loads(response.body) == {"status": "ok", "checks": {"postgres": "ok", "sqs": "ok"}}


def test_health_names_what_is_down(fresh: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        fresh.engine.publisher._queue_urls, "route", "http://127.0.0.1:9/000000000000/missing"
    )
    with Client(fresh.api.app) as client:
        response = client.http.get("/health")
    body = json.loads(response.body)
    assert response.status_code == 503
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["sqs"].startswith("down")


# --- WebSocket ------------------------------------------------------------------------


def test_connect_for_an_unknown_order_is_refused_and_writes_nothing(
    fresh: Stack, migrated_url: str
) -> None:
    before = row_counts(migrated_url)
    answer = fresh.websocket.connect(
        ws_connect_event(
            new_connection_id(), {"orderId": str(uuid.uuid4()), "apiKey": fresh.api_key}
        ),
        None,
    )
    assert answer["statusCode"] == 404
    assert row_counts(migrated_url) == before


def test_connect_with_an_order_subscribes_and_the_snapshot_follows(fresh: Stack) -> None:
    order_id = placed_order(fresh)
    connection = new_connection_id()
    answer = fresh.websocket.connect(
        ws_connect_event(connection, {"orderId": order_id, "apiKey": fresh.api_key}), None
    )
    assert answer["statusCode"] == 200

    fresh.run(order_id)

    received = fresh.management.messages(connection)
    assert received[0]["type"] == "snapshot"
    assert [m.get("status") for m in received][-1] == "confirmed"


@pytest.mark.parametrize(
    "body",
    [
        "garbage",
        "[]",
        '{"action": "teleport"}',
        '{"action": "subscribe"}',
        '{"action": "subscribe", "orderId": "nope"}',
        '{"action": "execute", "order": {"x": 1}}',
        '{"action": "execute"}',
        "\u0000",
        "x" * 20_000,
    ],
)
def test_bad_websocket_messages_get_an_error_on_the_socket_and_write_nothing(
    fresh: Stack, migrated_url: str, body: str
) -> None:
    connection = new_connection_id()
    fresh.websocket.connect(ws_connect_event(connection, headers=fresh.auth), None)
    before = row_counts(migrated_url)

    fresh.websocket.message(ws_message_event(connection, body), None)

    [reply] = fresh.management.messages(connection)
    assert reply["type"] == "error" and reply["error"]["message"]
    assert row_counts(migrated_url) == before


def test_an_unknown_action_is_named_in_the_error_but_never_echoed_whole(fresh: Stack) -> None:
    """A 15 KB action name would come back as a 15 KB error: to a socket that does not
    read, every such message is one more thing the gateway must hold."""
    connection = new_connection_id()
    fresh.websocket.connect(ws_connect_event(connection, headers=fresh.auth), None)

    fresh.websocket.message(ws_message_event(connection, {"action": "t" * 15_000}), None)

    [reply] = fresh.management.messages(connection)
    assert reply["error"]["field"] == "action"
    assert "tttt" in reply["error"]["message"]
    assert len(json.dumps(reply)) < 500


def test_execute_on_the_socket_places_the_order_and_streams_it(fresh: Stack) -> None:
    connection = new_connection_id()
    fresh.websocket.connect(ws_connect_event(connection, {"apiKey": fresh.api_key}), None)
    fresh.websocket.message(
        ws_message_event(connection, {"action": "execute", "order": ORDER}), None
    )
    accepted, snapshot = fresh.management.messages(connection)[:2]
    assert accepted["type"] == "accepted"
    assert snapshot["type"] == "snapshot" and snapshot["orderId"] == accepted["orderId"]

    fresh.run(accepted["orderId"])
    assert fresh.management.messages(connection)[-1]["status"] == "confirmed"


@pytest.mark.parametrize(
    "body",
    [{"action": "ping"}, {"action": "teleport"}, {"action": "execute", "order": ORDER}],
    ids=["ping", "a bad message", "execute"],
)
def test_a_client_gone_before_its_answer_does_not_fail_the_function(
    fresh: Stack, body: dict[str, Any]
) -> None:
    connection = new_connection_id()
    fresh.websocket.connect(ws_connect_event(connection, {"apiKey": fresh.api_key}), None)
    fresh.management.gone.add(connection)  # closed while its message was on the way

    answer = fresh.websocket.message(ws_message_event(connection, body), None)

    assert answer["statusCode"] == 200
    assert fresh.management.messages(connection) == []


def test_ping_gets_pong(fresh: Stack) -> None:
    connection = new_connection_id()
    fresh.websocket.connect(ws_connect_event(connection, {"apiKey": fresh.api_key}), None)
    fresh.websocket.message(ws_message_event(connection, {"action": "ping"}), None)
    assert fresh.management.messages(connection) == [{"type": "pong"}]


def test_disconnect_removes_the_connection_and_its_subscriptions(fresh: Stack) -> None:
    order_id = placed_order(fresh)
    connection = new_connection_id()
    fresh.websocket.connect(
        ws_connect_event(connection, {"orderId": order_id}, headers=fresh.auth), None
    )
    fresh.websocket.disconnect(ws_disconnect_event(connection), None)
    assert fresh.engine.subscriptions.subscribers(order_id) == []
