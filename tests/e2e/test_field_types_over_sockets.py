"""Over the real sockets of template.yaml on the local runtime: a field of the wrong
JSON type or an amount that is not plain ASCII digits answers 422 naming the field (over
HTTP and the socket's `execute`); a revoked key's open socket is refused even a ping;
a newline in a subscribe's orderId writes no line of its own into the log; and every
answer of both APIs, captured as a client receives it, has only camelCase keys."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import uuid
from typing import Any

import pytest
import websockets

from local_runtime.runtime import LocalRuntime
from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts
from order_engine.database import Database
from tests.support.json_style import snake_case_keys
from tests.support.stack import ORDER, new_api_key

FINAL = ("confirmed", "failed")


def request(
    runtime: LocalRuntime, method: str, path: str, key: str | None, body: Any = None
) -> tuple[int, Any]:
    """One request; (status, JSON answer)."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    connection = http.client.HTTPConnection("127.0.0.1", runtime.http_port, timeout=30)
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


async def socket_replies(
    url: str, messages: list[Any], *, until: Any = None, timeout: float = 30
) -> list[dict[str, Any]]:
    """Send `messages`, then a ping; every reply up to its pong (or, with `until`, up
    to when `until(replies so far)` is true)."""
    replies: list[dict[str, Any]] = []
    async with websockets.connect(url, open_timeout=10) as ws:
        for message in messages:
            await ws.send(message if isinstance(message, str) else json.dumps(message))
        if until is None:
            await ws.send(json.dumps({"action": "ping"}))
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            replies.append(reply)
            if (until is None and reply == {"type": "pong"}) or (until and until(replies)):
                return replies


def on_socket(
    runtime: LocalRuntime, key: str, messages: list[Any], **kwargs: Any
) -> list[dict[str, Any]]:
    return asyncio.run(socket_replies(f"{runtime.ws_url()}?apiKey={key}", messages, **kwargs))


# --- wrong types and spellings --------------------------------------------------------------

BAD_FIELDS = [
    ("type", {}),
    ("type", []),
    ("type", ["market"]),
    ("tokenIn", {}),
    ("slippageBps", []),
    ("amount", "1_5"),
    ("amount", "1__5"),
    ("amount", "\uff11\uff12"),  # full-width 12
    ("amount", "\u0661\u0662"),  # Arabic-Indic 12
]
BAD_IDS = [f"{name}={json.dumps(value)}" for name, value in BAD_FIELDS]


@pytest.mark.parametrize(("name", "value"), BAD_FIELDS, ids=BAD_IDS)
def test_a_wrong_type_or_spelling_answers_422_naming_the_field_over_http(
    runtime: LocalRuntime, fresh_api_key: str, name: str, value: Any
) -> None:
    status, answer = request(
        runtime, "POST", "/api/orders/execute", fresh_api_key, {**ORDER, name: value}
    )
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (
        422,
        "validation_error",
        name,
    )


def test_a_wrong_type_or_spelling_is_refused_naming_the_field_over_the_socket(
    runtime: LocalRuntime, fresh_api_key: str
) -> None:
    messages = [
        {"action": "execute", "order": {**ORDER, name: value}} for name, value in BAD_FIELDS
    ]
    replies = on_socket(runtime, fresh_api_key, messages)
    assert replies[-1] == {"type": "pong"}
    assert [(r["type"], r["error"]["code"], r["error"]["field"]) for r in replies[:-1]] == [
        ("error", "validation_error", name) for name, _ in BAD_FIELDS
    ]


# --- a revoked key's socket -------------------------------------------------------------------


def test_a_revoked_keys_open_socket_is_refused_even_a_ping(
    runtime: LocalRuntime, migrated_url: str
) -> None:
    key = new_api_key(migrated_url, f"e2e-revoked-ping-{uuid.uuid4().hex[:8]}")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with websockets.connect(f"{runtime.ws_url()}?apiKey={key}", open_timeout=10) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            before = json.loads(await asyncio.wait_for(ws.recv(), 15))
            with Database(migrated_url, max_size=1) as database:
                await asyncio.to_thread(Accounts(AccountStore(database)).revoke_key, key)
            await ws.send(json.dumps({"action": "ping"}))
            after = json.loads(await asyncio.wait_for(ws.recv(), 15))
            return before, after

    before, after = asyncio.run(scenario())
    assert before == {"type": "pong"}
    assert (after["type"], after["error"]["code"]) == ("error", "unauthorized")


# --- log forging ------------------------------------------------------------------------------


def test_a_newline_in_a_subscribe_order_id_forges_no_log_line(
    runtime: LocalRuntime, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "2026-12-04 13:00:00 INFO order confirmed for mallory"
    caplog.set_level(logging.INFO)
    order_id = f"{uuid.uuid4()}\n{forged}"

    replies = on_socket(runtime, api_key, [{"action": "subscribe", "orderId": order_id}])

    assert (replies[0]["error"]["code"], replies[0]["error"]["field"]) == (
        "validation_error",
        "orderId",
    )
    invocations = [r for r in caplog.records if r.name == "local_runtime.invocations"]
    assert any("MessageFunction" in record.getMessage() for record in invocations)
    for record in caplog.records:
        message = record.getMessage()
        assert "\n" not in message and "\r" not in message, message


# --- the public JSON style --------------------------------------------------------------------


def test_every_answer_of_both_apis_is_camel_case(
    runtime: LocalRuntime, fresh_api_key: str, api_key: str
) -> None:
    """Capture what a client receives on every surface, errors included; walk the keys."""
    captured: list[tuple[str, Any]] = []

    def keep(where: str, answer: Any) -> Any:
        captured.append((where, answer))
        return answer

    status, placed = request(runtime, "POST", "/api/orders/execute", fresh_api_key, ORDER)
    keep("POST 202", placed)
    assert status == 202
    events = asyncio.run(
        socket_replies(
            f"{placed['wsUrl']}&apiKey={fresh_api_key}",
            [],
            until=lambda got: got[-1].get("status") in FINAL,
        )
    )
    captured += [("socket subscribed by handshake", m) for m in events]
    status, order = request(runtime, "GET", f"/api/orders/{placed['orderId']}", fresh_api_key)
    assert status == 200 and order["route"]["quotes"], order
    keep("GET 200", order)
    answers = [
        ("GET 404", "GET", f"/api/orders/{uuid.uuid4()}", fresh_api_key, None),
        ("GET 422", "GET", "/api/orders/not-an-id", fresh_api_key, None),
        ("POST 401", "POST", "/api/orders/execute", None, ORDER),
        ("POST 400", "POST", "/api/orders/execute", fresh_api_key, b"{"),
        ("POST 422", "POST", "/api/orders/execute", fresh_api_key, {**ORDER, "amount": "0"}),
        ("POST 413", "POST", "/api/orders/execute", fresh_api_key, {"pad": "x" * 20_000}),
        ("GET /health", "GET", "/health", None, None),
    ]
    for where, method, path, key, body in answers:
        keep(where, request(runtime, method, path, key, body)[1])
    replies = on_socket(
        runtime,
        api_key,
        [
            {"action": "execute", "order": ORDER},
            {"action": "subscribe", "orderId": str(uuid.uuid4())},
            {"action": "teleport"},
            "{",
        ],
        until=lambda got: (
            any(m.get("status") in FINAL for m in got)
            and [m["type"] for m in got].count("error") == 3
        ),
    )
    captured += [("socket execute", m) for m in replies]

    assert {m["type"] for m in events + replies} >= {"snapshot", "event", "accepted", "error"}
    offending = {where: snake_case_keys(answer) for where, answer in captured}
    assert {where: keys for where, keys in offending.items() if keys} == {}
