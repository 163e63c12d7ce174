"""Bad frames on the WebSocket API: garbage, bad actions and bad orders get a typed error
on a socket that stays usable; frames API Gateway refuses close only their own
connection; a client that leaves at once fails no function."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
import websockets

from local_runtime.runtime import LocalRuntime
from order_engine.accounts import key_prefix
from tests.support.bad_bodies import BAD_BODIES
from tests.support.bad_input import (
    DEEP,
    HUGE_DEEP,
    Mallory,
    order_text,
    order_with,
    send_http,
    writes_nothing,
)
from tests.support.stack import ORDER


@dataclass
class Exchange:
    replies: list[Any]  # what came back before the pong (or the close)
    close_code: int | None  # None: still open (the pong came back)


PONG = {"type": "pong"}


async def exchange(
    url: str, frames: list[tuple[str | bytes, bool]], *, pongs: int = 0, timeout: float = 15
) -> Exchange:
    """Send `frames` ((data, as_text)), then a ping; collect the replies up to that ping's
    pong (the frames themselves may hold `pongs` pings). A socket that stops answering
    fails here, after `timeout` seconds."""
    replies: list[Any] = []
    async with websockets.connect(url, max_size=None, open_timeout=10) as ws:
        try:
            for data, as_text in frames:
                await ws.send(in_frames(data), text=as_text)
            await ws.send(json.dumps({"action": "ping"}))
            while True:
                raw = await asyncio.wait_for(ws.recv(), timeout)
                message = json.loads(raw)
                if message == PONG and replies.count(PONG) == pongs:
                    return Exchange(replies, None)
                replies.append(message)
        except websockets.ConnectionClosed as closed:
            return Exchange(replies, closed.rcvd.code if closed.rcvd else 1006)


def in_frames(data: str | bytes) -> list[str] | list[bytes]:
    """A message cut into frames API Gateway accepts (32 KB at most: 8192 characters of
    up to 4 bytes each), so what is tested is the message, not its framing."""
    if isinstance(data, str):
        return [data[i : i + 8192] for i in range(0, len(data), 8192)] or [""]
    return [data[i : i + 32768] for i in range(0, len(data), 32768)] or [b""]


def message_of(data: Any) -> tuple[str, bool]:
    return json.dumps(data), True


def execute(order: Any) -> tuple[str, bool]:
    return message_of({"action": "execute", "order": order})


def raw_execute(order_json: bytes) -> tuple[str, bool]:
    return '{"action":"execute","order":' + order_json.decode() + "}", True


@dataclass
class WsCase:
    name: str
    frames: list[tuple[str | bytes, bool]]
    codes: list[str] = field(default_factory=list)  # error codes of the replies, in order
    close_code: int | None = None


WS_GARBAGE = [
    WsCase("not JSON", [("{", True)], ["malformed_request"]),
    WsCase("an empty text frame", [("", True)], ["malformed_request"]),
    WsCase("only whitespace", [(" \n ", True)], ["malformed_request"]),
    WsCase("a JSON array", [("[]", True)], ["malformed_request"]),
    WsCase("a JSON string", [('"ping"', True)], ["malformed_request"]),
    WsCase("a JSON number", [("1", True)], ["malformed_request"]),
    WsCase("JSON null", [("null", True)], ["malformed_request"]),
    WsCase("NaN", [("NaN", True)], ["malformed_request"]),
    WsCase("a raw NUL after the JSON", [('{"action":"ping"}\x00', True)], ["malformed_request"]),
    WsCase("a raw NUL inside a string", [('{"action":"pi\x00ng"}', True)], ["malformed_request"]),
    WsCase(
        "a number of 5000 digits", [('{"action":' + "9" * 5000 + "}", True)], ["malformed_request"]
    ),
    WsCase(
        "JSON nested 5000 deep",
        [('{"action":"ping","x":' + "[" * DEEP + "]" * DEEP + "}", True)],
        ["malformed_request"],
    ),
    WsCase(
        "an order nested 5000 deep", [raw_execute(b"[" * DEEP + b"]" * DEEP)], ["malformed_request"]
    ),
    WsCase(
        "JSON nested 50k deep (100 KB)",
        [('{"action":"ping","x":' + "[" * (HUGE_DEEP // 2) + "]" * (HUGE_DEEP // 2) + "}", True)],
        ["bad_request"],
    ),
    WsCase("no action", [message_of({})], ["bad_request"]),
    WsCase("action null", [message_of({"action": None})], ["bad_request"]),
    WsCase("action as a number", [message_of({"action": 1})], ["bad_request"]),
    WsCase("action as a list", [message_of({"action": ["ping"]})], ["bad_request"]),
    WsCase("action as an object", [message_of({"action": {"ping": 1}})], ["bad_request"]),
    WsCase("action with a NUL", [message_of({"action": "ping\u0000"})], ["bad_request"]),
    WsCase("action of SQL", [message_of({"action": "'; DROP TABLE orders;--"})], ["bad_request"]),
    WsCase("action as an emoji", [message_of({"action": "\U0001f680"})], ["bad_request"]),
    WsCase("action as a lone surrogate", [('{"action":"\\ud800"}', True)], ["bad_request"]),
    WsCase("action of 10 KB", [message_of({"action": "a" * 10_000})], ["bad_request"]),
    WsCase(
        "between 16 KB and 128 KB",
        [message_of({"action": "ping", "pad": "x" * 20_000})],
        ["bad_request"],
    ),
    WsCase(
        "unicode around a ping is fine",
        [message_of({"action": "ping", "note": "\U0001f680 \u202e \u00e9"})],
        ["pong"],
    ),
    WsCase("subscribe without an order id", [message_of({"action": "subscribe"})], ["bad_request"]),
    WsCase(
        "subscribe to a number",
        [message_of({"action": "subscribe", "orderId": 7})],
        ["bad_request"],
    ),
    WsCase(
        "subscribe to a malformed id",
        [message_of({"action": "subscribe", "orderId": "not-a-uuid"})],
        ["validation_error"],
    ),
    WsCase(
        "subscribe to SQL",
        [message_of({"action": "subscribe", "orderId": "1' OR '1'='1"})],
        ["validation_error"],
    ),
    WsCase(
        "subscribe to a traversal",
        [message_of({"action": "subscribe", "orderId": "../../etc/passwd"})],
        ["validation_error"],
    ),
    WsCase(
        "subscribe to a NUL",
        [message_of({"action": "subscribe", "orderId": "\u0000"})],
        ["validation_error"],
    ),
    WsCase(
        "subscribe to an unknown order",
        [message_of({"action": "subscribe", "orderId": str(uuid.uuid4())})],
        ["not_found"],
    ),
    WsCase("execute without an order", [message_of({"action": "execute"})], ["malformed_request"]),
    WsCase("execute a string", [execute("SOL->USDC")], ["malformed_request"]),
    WsCase("execute a list", [execute([ORDER])], ["malformed_request"]),
    WsCase("execute a number", [execute(2)], ["malformed_request"]),
    WsCase(
        "several bad frames in a row",
        [("{", True), ("[]", True), message_of({})],
        ["malformed_request", "malformed_request", "bad_request"],
    ),
]

# The HTTP table's bad orders, sent with `execute` on the socket.
WS_BAD_ORDERS = [
    WsCase(f"execute: {case.name}", [raw_execute(case.body)], [case.code or ""])
    for case in BAD_BODIES
    if case.status == 422
]

WS_CASES = WS_GARBAGE + WS_BAD_ORDERS


@pytest.mark.parametrize("case", WS_CASES, ids=[c.name for c in WS_CASES])
def test_a_bad_frame_gets_a_typed_error_and_the_socket_stays_usable(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory, case: WsCase
) -> None:
    url = f"{runtime.ws_url()}?apiKey={mallory.key}"
    with writes_nothing(migrated_url, mallory):
        result = asyncio.run(exchange(url, case.frames, pongs=case.codes.count("pong")))

    assert result.close_code is None, f"closed with {result.close_code}: {result.replies}"
    errors = [r for r in result.replies if r != PONG]
    assert all(r.get("type") == "error" and r["error"]["message"] for r in errors), errors
    codes = [r["error"]["code"] if r != PONG else "pong" for r in result.replies]
    assert codes == case.codes, result.replies


def close_right_after(url: str, frame: str, caplog: pytest.LogCaptureFixture) -> None:
    """Send `frame` and close at once, then wait until the runtime ran $disconnect,
    which comes after the messages the connection had sent."""

    async def hit_and_run() -> None:
        async with websockets.connect(url, open_timeout=10) as ws:
            await ws.send(frame)

    seen = len(caplog.records)
    asyncio.run(hit_and_run())
    deadline = time.monotonic() + 10
    while not any(r.getMessage().startswith("DisconnectFunction ") for r in caplog.records[seen:]):
        assert time.monotonic() < deadline, "no $disconnect"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "frame", ['{"action":"ping"}', '{"action":"teleport"}', "{"], ids=["ping", "bad", "garbage"]
)
def test_a_client_that_leaves_before_its_answer_fails_no_function(
    runtime: LocalRuntime,
    migrated_url: str,
    mallory: Mallory,
    caplog: pytest.LogCaptureFixture,
    frame: str,
) -> None:
    with writes_nothing(migrated_url, mallory):
        close_right_after(f"{runtime.ws_url()}?apiKey={mallory.key}", frame, caplog)
    # no_function_fails checks that the MessageFunction did not raise on the gone client


def statuses_of_account(database_url: str, api_key: str) -> list[str]:
    """The statuses of the orders of `api_key`'s account."""
    query = """
        SELECT o.status FROM orders o JOIN api_keys k ON k.account_id = o.account_id
         WHERE k.prefix = %s
    """
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute(query, (key_prefix(api_key),))]


def test_an_order_executed_by_a_client_that_left_at_once_still_confirms(
    runtime: LocalRuntime, migrated_url: str, fresh_api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    frame = json.dumps({"action": "execute", "order": ORDER})
    close_right_after(f"{runtime.ws_url()}?apiKey={fresh_api_key}", frame, caplog)

    deadline = time.monotonic() + 30
    while statuses_of_account(migrated_url, fresh_api_key) != ["confirmed"]:
        assert time.monotonic() < deadline, statuses_of_account(migrated_url, fresh_api_key)
        time.sleep(0.2)


def test_a_bad_order_over_the_socket_names_its_field(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory
) -> None:
    url = f"{runtime.ws_url()}?apiKey={mallory.key}"
    frames: list[tuple[str | bytes, bool]] = [
        raw_execute(order_with(tokenIn="\U0001f680")),
        raw_execute(order_text(slippage="1e999999999")),
    ]
    with writes_nothing(migrated_url, mallory):
        result = asyncio.run(exchange(url, frames))
    assert [r["error"]["field"] for r in result.replies] == ["tokenIn", "slippageBps"]


# Frames that end the connection, as API Gateway ends it.
CLOSING = [
    # API Gateway refuses binary frames: "disconnects the client with code 1003".
    ("a binary frame", [(b'{"action":"ping"}', False)], 1003),
    ("a binary frame of garbage", [(bytes(range(256)), False)], 1003),
    # A text frame must be UTF-8 (RFC 6455 8.1): the server closes with 1007.
    ("invalid UTF-8 in a text frame", [(b'{"action":"\xff\xfe"}', True)], 1007),
    ("a lone surrogate encoded in a text frame", [(b'{"action":"\xed\xa0\x80"}', True)], 1007),
    # Over the 128 KB message quota: 1009, as on AWS.
    ("a message over 128 KB", [message_of({"action": "ping", "pad": "x" * 140_000})], 1009),
    ("a message over 1 MB", [message_of({"action": "ping", "pad": "x" * 1_100_000})], 1009),
]


@pytest.mark.parametrize(("frames", "code"), [c[1:] for c in CLOSING], ids=[c[0] for c in CLOSING])
def test_a_frame_the_gateway_refuses_closes_only_its_own_connection(
    runtime: LocalRuntime,
    migrated_url: str,
    mallory: Mallory,
    frames: list[tuple[str | bytes, bool]],
    code: int,
) -> None:
    url = f"{runtime.ws_url()}?apiKey={mallory.key}"

    async def scenario() -> tuple[Exchange, Exchange]:
        async with websockets.connect(url) as bystander:
            refused = await exchange(url, frames)
            await bystander.send(json.dumps({"action": "ping"}))
            pong = json.loads(await asyncio.wait_for(bystander.recv(), 10))
            return refused, Exchange([pong], None)

    with writes_nothing(migrated_url, mallory):
        refused, bystander = asyncio.run(scenario())
    assert refused.close_code == code, refused
    assert refused.replies == []
    assert bystander.replies == [{"type": "pong"}]
    assert send_http(runtime, "GET", "/health").status == 200
