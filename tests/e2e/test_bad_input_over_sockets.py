"""Bad input over the real sockets (reliability.md #16), against template.yaml running on
the local runtime: the HTTP API and the WebSocket API get malformed, hostile and
oversized requests and frames.

Each case must be answered (or closed) cleanly: never a 500, never API Gateway's 502 of
a crashed handler, never a hung socket, and nothing written. Every bad request speaks
for an account of its own ("mallory"), whose rows in orders, order_events, outbox and
idempotency_keys are counted before and after each case, along with the orders of all
accounts; at the end she must have none. And the stack must still be healthy and
confirm a good order, over HTTP and over a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
import pytest
import websockets

from local_runtime.runtime import LocalRuntime
from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts, key_prefix
from order_engine_cli.client import OrderClient
from tests.support.stack import (
    HAPPY,
    ORDER,
    execute_on_socket,
    follow_posted_order,
    new_api_key,
)

GOOD_BODY = json.dumps(ORDER)
SEMI_VALID_KEY = "oe_live_0123abcd_" + "e" * 43  # the shape of a key, of no account


# --- the database's view --------------------------------------------------------------


@dataclass(frozen=True)
class Mallory:
    """The account every bad request speaks for."""

    key: str
    account_id: str


@pytest.fixture(scope="module")
def mallory(migrated_url: str) -> Mallory:
    name = f"e2e-mallory-{uuid.uuid4().hex[:8]}"
    key = new_api_key(migrated_url, name)
    with psycopg.connect(migrated_url) as conn:
        row = conn.execute("SELECT a.id FROM accounts a WHERE a.name = %s", (name,)).fetchone()
    assert row is not None
    return Mallory(key, str(row[0]))


def row_counts(database_url: str, account_id: str) -> dict[str, int]:
    """Rows of the account's orders in orders, order_events, outbox and idempotency_keys,
    and the orders of every account."""
    query = """
        SELECT (SELECT count(*) FROM orders WHERE account_id = %(a)s),
               (SELECT count(*) FROM order_events e JOIN orders o ON o.id = e.order_id
                 WHERE o.account_id = %(a)s),
               (SELECT count(*) FROM outbox x JOIN orders o ON o.id = x.order_id
                 WHERE o.account_id = %(a)s),
               (SELECT count(*) FROM idempotency_keys i JOIN orders o ON o.id = i.order_id
                 WHERE o.account_id = %(a)s),
               (SELECT count(*) FROM orders)
    """
    with psycopg.connect(database_url) as conn:
        row = conn.execute(query, {"a": account_id}).fetchone()
    assert row is not None
    names = ("orders", "order_events", "outbox", "idempotency_keys", "orders_of_all_accounts")
    return dict(zip(names, row, strict=True))


@contextmanager
def writes_nothing(database_url: str, mallory: Mallory) -> Iterator[None]:
    before = row_counts(database_url, mallory.account_id)
    yield
    assert row_counts(database_url, mallory.account_id) == before


# The functions behind the two APIs: none of them may raise or time out on bad input.
API_FUNCTIONS = frozenset(
    {"ApiFunction", "ConnectFunction", "MessageFunction", "DisconnectFunction"}
)


@pytest.fixture(autouse=True)
def no_function_fails(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every invocation is logged by the runtime, at WARNING when it raised or timed out."""
    caplog.set_level(logging.INFO, logger="local_runtime.invocations")
    yield
    failed = [
        record.getMessage()
        for record in caplog.get_records("call")
        if record.name == "local_runtime.invocations"
        and record.levelno >= logging.WARNING
        and record.getMessage().split(" ", 1)[0] in API_FUNCTIONS
    ]
    assert not failed


# --- HTTP, byte for byte -----------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send_http(
    runtime: LocalRuntime,
    method: str,
    target: str | bytes,
    *,
    body: bytes = b"",
    headers: Sequence[tuple[str, str | bytes]] = (),
) -> Answer:
    """One HTTP/1.1 exchange on a raw socket, so that anything (a control character in a
    header, a byte that is not ASCII in the path) reaches the server as written."""
    target_bytes = target if isinstance(target, bytes) else target.encode()
    lines = [
        method.encode() + b" " + target_bytes + b" HTTP/1.1",
        f"Host: 127.0.0.1:{runtime.http_port}".encode(),
        b"Connection: close",
        f"Content-Length: {len(body)}".encode(),
    ]
    for name, value in headers:
        lines.append(
            name.encode() + b": " + (value if isinstance(value, bytes) else value.encode("latin-1"))
        )
    with socket.create_connection(("127.0.0.1", runtime.http_port), timeout=30) as sock:
        # The server may answer (and close) before it has read the whole body.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return Answer(
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            response.read(),
        )


@dataclass
class HttpCase:
    name: str
    status: int
    code: str | None = None  # the engine's error code, when the engine answers
    method: str = "POST"
    target: str | bytes = "/api/orders/execute"
    body: bytes = GOOD_BODY.encode()
    content_type: str | None = "application/json"
    auth: str | None = "mallory"  # "mallory": her key; None: no header; else the header
    headers: list[tuple[str, str | bytes]] = field(default_factory=list)
    field: str | None = None

    def header_list(self, mallory: Mallory) -> list[tuple[str, str | bytes]]:
        headers: list[tuple[str, str | bytes]] = []
        if self.content_type is not None:
            headers.append(("Content-Type", self.content_type))
        if self.auth == "mallory":
            headers.append(("Authorization", f"Bearer {mallory.key}"))
        elif self.auth is not None:
            headers.append(("Authorization", self.auth))
        return headers + self.headers


def order_with(**changes: Any) -> bytes:
    return json.dumps({**ORDER, **changes}).encode()


def order_text(amount: str = '"2"', slippage: str = "500") -> bytes:
    """An order whose amount and slippage are written as raw JSON text."""
    return (
        '{"type":"market","tokenIn":"SOL","tokenOut":"USDC",'
        f'"amount":{amount},"slippageBps":{slippage}}}'
    ).encode()


# Levels of nesting: far past the JSON decoder's recursion limit (1000), in 10 KB, under
# the engine's 16 KB limit, so the parsers see it; HUGE_DEEP is 200 KB.
DEEP = 5_000
OBJECTS_DEEP = 2_500  # '{"a":' is 5 bytes a level
HUGE_DEEP = 100_000

BAD_BODIES = [
    # not JSON, or not an object
    HttpCase("not JSON", 400, "malformed_request", body=b"{"),
    HttpCase("empty body", 400, "malformed_request", body=b""),
    HttpCase("only whitespace", 400, "malformed_request", body=b" \n\t "),
    HttpCase("a JSON array", 400, "malformed_request", body=b"[]"),
    HttpCase("a JSON string", 400, "malformed_request", body=b'"order"'),
    HttpCase("a JSON number", 400, "malformed_request", body=b"42"),
    HttpCase("JSON null", 400, "malformed_request", body=b"null"),
    HttpCase("JSON true", 400, "malformed_request", body=b"true"),
    HttpCase("NaN literal", 400, "malformed_request", body=order_text(amount="NaN")),
    HttpCase("Infinity literal", 400, "malformed_request", body=order_text(amount="Infinity")),
    HttpCase("-Infinity literal", 400, "malformed_request", body=order_text(slippage="-Infinity")),
    HttpCase("invalid UTF-8", 400, "malformed_request", body=b"\xff\xfe{\x80}"),
    HttpCase("a raw NUL between tokens", 400, "malformed_request", body=b'{"type":\x00"market"}'),
    HttpCase(
        "a raw NUL in a string",
        400,
        "malformed_request",
        body=order_with(tokenIn="SO").replace(b'"SO"', b'"SO\x00L"'),
    ),
    HttpCase("arrays nested 5000 deep", 400, "malformed_request", body=b"[" * DEEP + b"]" * DEEP),
    HttpCase(
        "objects nested 2500 deep",
        400,
        "malformed_request",
        body=b'{"a":' * OBJECTS_DEEP + b"1" + b"}" * OBJECTS_DEEP,
    ),
    HttpCase(
        "an amount nested 5000 deep",
        400,
        "malformed_request",
        body=order_text(amount="[" * DEEP + "]" * DEEP),
    ),
    HttpCase(
        "a number of 5000 digits",
        400,
        "malformed_request",
        body=order_text(amount="9" * 5000),
    ),
    # too big
    HttpCase(
        "arrays nested 100k deep",
        413,
        "payload_too_large",
        body=b"[" * HUGE_DEEP + b"]" * HUGE_DEEP,
    ),
    HttpCase("just over 16 KB", 413, "payload_too_large", body=order_with(pad="x" * 16_384)),
    HttpCase("over 1 MB", 413, "payload_too_large", body=order_with(pad="x" * 1_100_000)),
    HttpCase("over 1 MB of garbage", 413, "payload_too_large", body=b"\xff" * 1_100_000),
    # wrong types and values
    HttpCase(
        "negative amount", 422, "validation_error", body=order_with(amount=-1), field="amount"
    ),
    HttpCase("zero amount", 422, "validation_error", body=order_with(amount="0"), field="amount"),
    HttpCase("minus zero", 422, "validation_error", body=order_text(amount="-0"), field="amount"),
    HttpCase(
        "amount 1e309 (a float's infinity)",
        422,
        "validation_error",
        body=order_text(amount="1e309"),
        field="amount",
    ),
    HttpCase(
        "amount '1e309'", 422, "validation_error", body=order_with(amount="1e309"), field="amount"
    ),
    HttpCase(
        "amount 1e999999999",
        422,
        "validation_error",
        body=order_text(amount="1e999999999"),
        field="amount",
    ),
    HttpCase(
        "amount 1e-999999999",
        422,
        "validation_error",
        body=order_text(amount="1e-999999999"),
        field="amount",
    ),
    HttpCase(
        "amount of 29 significant digits",
        422,
        "validation_error",
        body=order_with(amount="1.0000000000000000000000000001"),
        field="amount",
    ),
    HttpCase(
        "amount 'NaN'", 422, "validation_error", body=order_with(amount="NaN"), field="amount"
    ),
    HttpCase(
        "amount '-Infinity'",
        422,
        "validation_error",
        body=order_with(amount="-Infinity"),
        field="amount",
    ),
    HttpCase(
        "amount as a boolean", 422, "validation_error", body=order_with(amount=True), field="amount"
    ),
    HttpCase("amount null", 422, "validation_error", body=order_with(amount=None), field="amount"),
    HttpCase(
        "amount as an object",
        422,
        "validation_error",
        body=order_with(amount={"$gt": 0}),
        field="amount",
    ),
    HttpCase(
        "amount with a comma",
        422,
        "validation_error",
        body=order_with(amount="1,5"),
        field="amount",
    ),
    HttpCase(
        "amount in hex", 422, "validation_error", body=order_with(amount="0x10"), field="amount"
    ),
    HttpCase(
        "amount with SQL",
        422,
        "validation_error",
        body=order_with(amount="1; DROP TABLE orders;--"),
        field="amount",
    ),
    HttpCase(
        "amount with a NUL",
        422,
        "validation_error",
        body=order_with(amount="1\u0000"),
        field="amount",
    ),
    HttpCase(
        "slippage 1e999999999",
        422,
        "validation_error",
        body=order_text(slippage="1e999999999"),
        field="slippageBps",
    ),
    HttpCase(
        "slippage -1e999999999",
        422,
        "validation_error",
        body=order_text(slippage="-1e999999999"),
        field="slippageBps",
    ),
    HttpCase(
        "slippage of 4000 digits",
        422,
        "validation_error",
        body=order_text(slippage="9" * 4000),
        field="slippageBps",
    ),
    HttpCase(
        "slippage as a string",
        422,
        "validation_error",
        body=order_with(slippageBps="100"),
        field="slippageBps",
    ),
    HttpCase(
        "fractional slippage",
        422,
        "validation_error",
        body=order_with(slippageBps=1.5),
        field="slippageBps",
    ),
    HttpCase(
        "slippage true",
        422,
        "validation_error",
        body=order_with(slippageBps=True),
        field="slippageBps",
    ),
    HttpCase("type 'limit'", 422, "validation_error", body=order_with(type="limit"), field="type"),
    HttpCase(
        "type with SQL",
        422,
        "validation_error",
        body=order_with(type="market'; DELETE FROM orders;--"),
        field="type",
    ),
    HttpCase(
        "type with a NUL",
        422,
        "validation_error",
        body=order_with(type="market\u0000"),
        field="type",
    ),
    HttpCase(
        "token as a number", 422, "validation_error", body=order_with(tokenIn=5), field="tokenIn"
    ),
    HttpCase(
        "token as a list",
        422,
        "validation_error",
        body=order_with(tokenOut=["USDC"]),
        field="tokenOut",
    ),
    HttpCase(
        "unknown token", 422, "validation_error", body=order_with(tokenOut="DOGE"), field="tokenOut"
    ),
    HttpCase(
        "the same token twice",
        422,
        "validation_error",
        body=order_with(tokenOut="sol"),
        field="tokenOut",
    ),
    HttpCase(
        "SQL in a token",
        422,
        "validation_error",
        body=order_with(tokenIn="'; DROP TABLE orders;--"),
        field="tokenIn",
    ),
    HttpCase(
        "SQL tautology in a token",
        422,
        "validation_error",
        body=order_with(tokenOut="' OR '1'='1"),
        field="tokenOut",
    ),
    HttpCase(
        "NUL in a token",
        422,
        "validation_error",
        body=order_with(tokenIn="SOL\u0000"),
        field="tokenIn",
    ),
    HttpCase(
        "emoji token",
        422,
        "validation_error",
        body=order_with(tokenIn="\U0001f680"),
        field="tokenIn",
    ),
    HttpCase(
        "right-to-left override in a token",
        422,
        "validation_error",
        body=order_with(tokenOut="\u202eCDSU"),
        field="tokenOut",
    ),
    HttpCase(
        "zero-width space in a token",
        422,
        "validation_error",
        body=order_with(tokenIn="S\u200bOL"),
        field="tokenIn",
    ),
    HttpCase(
        "fullwidth letters",
        422,
        "validation_error",
        body=order_with(tokenIn="\uff33\uff2f\uff2c"),
        field="tokenIn",
    ),
    HttpCase(
        "long s, upper-cased to S",
        422,
        "validation_error",
        body=order_with(tokenIn="\u017fol"),
        field="tokenIn",
    ),
    HttpCase(
        "dotless i, upper-cased to I",
        422,
        "validation_error",
        body=order_with(tokenOut="usdt", tokenIn="\u0131nvalid"),
        field="tokenIn",
    ),
    HttpCase(
        "a lone surrogate in a token",
        422,
        "validation_error",
        body=order_text().replace(b'"SOL"', b'"\\ud800"'),
        field="tokenIn",
    ),
    HttpCase(
        "a 10 KB token",
        422,
        "validation_error",
        body=order_with(tokenIn="A" * 10_000),
        field="tokenIn",
    ),
    HttpCase("an extra field", 422, "validation_error", body=order_with(price=1), field="price"),
    HttpCase(
        "__proto__",
        422,
        "validation_error",
        body=order_with(__proto__={"admin": True}),
        field="__proto__",
    ),
    HttpCase(
        "an emoji field",
        422,
        "validation_error",
        body=order_with(**{"\U0001f4a5": 1}),
        field="\U0001f4a5",
    ),
    HttpCase(
        "a NUL field", 422, "validation_error", body=order_with(**{"\u0000": 1}), field="\u0000"
    ),
    HttpCase(
        "a lone surrogate field",
        422,
        "validation_error",
        body=order_text().replace(b'"type"', b'"\\udfff":1,"type"'),
        field="\udfff",
    ),
    HttpCase(
        "SQL in a field name",
        422,
        "validation_error",
        body=order_with(**{'amount" = 0; --': 1}),
        field='amount" = 0; --',
    ),
]

CONTENT_TYPES = [
    HttpCase(f"content type {ct}", 415, content_type=ct)
    for ct in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/xml",
        "application/octet-stream",
        "image/png",
        "application/jsonp",
        "application/json-patch+json",
        "; ;",
    )
]

WRONG_METHODS = [
    HttpCase(f"{method} {target}", 403, method=method, target=target, body=b"")
    for method, target in (
        ("PUT", "/api/orders/execute"),
        ("DELETE", "/api/orders/execute"),
        ("PATCH", "/api/orders/execute"),
        ("OPTIONS", "/api/orders/execute"),
        ("HEAD", "/api/orders/execute"),
        ("TRACE", "/api/orders/execute"),
        ("FOO", "/api/orders/execute"),
        ("POST", f"/api/orders/{uuid.UUID(int=1)}"),
        ("DELETE", f"/api/orders/{uuid.UUID(int=1)}"),
        ("POST", "/health"),
    )
]

UNKNOWN_PATHS = [
    HttpCase(f"path {target!r}", 403, method=method, target=target)
    for method, target in (
        ("POST", "/api"),
        ("POST", "/api/orders"),
        ("POST", "/api/orders/execute/extra"),
        ("POST", "/API/ORDERS/EXECUTE"),
        ("POST", "/api/orders/execute%00"),
        ("GET", "/api/orders/a/b"),
        ("GET", "/api/orders/..%2F..%2F..%2Fetc%2Fpasswd"),
        ("GET", "/../../etc/passwd"),
        ("GET", "/%2e%2e/%2e%2e/etc/passwd"),
        ("GET", "/api/orders/x/..%2F..%2Fhealth"),
        ("GET", "/.env"),
        ("GET", "/v2/api/orders/execute"),
        ("GET", "/" + "a" * 8000),
    )
]

BAD_KEYS = [
    HttpCase(f"auth {name}", 401, "unauthorized", auth=header)
    for name, header in (
        ("missing", None),
        ("empty", ""),
        ("scheme only", "Bearer"),
        ("scheme and a space", "Bearer "),
        ("Basic", "Basic dXNlcjpwYXNz"),
        ("an unknown word", "Bearer nope"),
        ("well shaped, of nobody", f"Bearer {SEMI_VALID_KEY}"),
        ("SQL", "Bearer ' OR '1'='1"),
        ("SQL in a key's shape", "Bearer oe_live_' OR 1=1;--"),
        ("8 KB", "Bearer " + "k" * 8000),
        ("latin-1", "Bearer oe_live_\xe9\xe9\xe9"),
        ("the key as a scheme", SEMI_VALID_KEY),
    )
] + [
    HttpCase(
        "auth as a query parameter",
        401,
        "unauthorized",
        auth=None,
        target=f"/api/orders/execute?apiKey={SEMI_VALID_KEY}",
    ),
    HttpCase(
        "auth as x-api-key", 401, "unauthorized", auth=None, headers=[("x-api-key", SEMI_VALID_KEY)]
    ),
    HttpCase("auth missing, body over 1 MB", 401, "unauthorized", auth=None, body=b"x" * 1_100_000),
    HttpCase(
        "auth missing to read an order",
        401,
        "unauthorized",
        auth=None,
        method="GET",
        target=f"/api/orders/{uuid.uuid4()}",
        body=b"",
    ),
]


def _order_path(raw: str, *, encode: bool = True) -> str:
    return "/api/orders/" + (quote(raw, safe="") if encode else raw)


MALFORMED_IDS = [
    HttpCase(
        f"order id {name}",
        status,
        code,
        method="GET",
        target=target,
        body=b"",
        field="id" if code else None,
    )
    for name, target, status, code in (
        ("not a uuid", _order_path("not-a-uuid"), 422, "validation_error"),
        (
            "'execute' (GET on the POST route's path)",
            "/api/orders/execute",
            422,
            "validation_error",
        ),
        ("SQL tautology", _order_path("1' OR '1'='1"), 422, "validation_error"),
        ("SQL drop", _order_path("'; DROP TABLE orders;--"), 422, "validation_error"),
        (
            "SQL union",
            _order_path("x' UNION SELECT key_hash FROM api_keys--"),
            422,
            "validation_error",
        ),
        ("dot dot", _order_path(".."), 422, "validation_error"),
        ("encoded dots", _order_path("%2e%2e", encode=False), 422, "validation_error"),
        (
            "double-encoded traversal",
            _order_path("..%252F..%252Fetc%252Fpasswd", encode=False),
            422,
            "validation_error",
        ),
        ("NUL", _order_path("\u0000"), 422, "validation_error"),
        ("uuid and a NUL", _order_path(f"{uuid.uuid4()}\u0000"), 422, "validation_error"),
        ("invalid UTF-8", _order_path("%FF%FE", encode=False), 422, "validation_error"),
        ("emoji", _order_path("\U0001f680"), 422, "validation_error"),
        ("HTML", _order_path("<img src=x onerror=alert(1)>"), 422, "validation_error"),
        ("CRLF and a header", _order_path("x\r\nSet-Cookie: a=b"), 422, "validation_error"),
        ("shell", _order_path("$(reboot)"), 422, "validation_error"),
        ("template", _order_path("{{7*7}}"), 422, "validation_error"),
        ("10 KB", _order_path("f" * 10_000), 422, "validation_error"),
        ("unknown uuid", _order_path(str(uuid.uuid4())), 404, "not_found"),
        ("nil uuid", _order_path(str(uuid.UUID(int=0))), 404, "not_found"),
        ("uuid in braces", _order_path("{" + str(uuid.uuid4()) + "}"), 404, "not_found"),
        ("uuid as a URN", _order_path(f"urn:uuid:{uuid.uuid4()}"), 404, "not_found"),
    )
] + [
    # Bytes no client should put in a request line: the HTTP server refuses them (400).
    HttpCase(f"order id as raw {name}", 400, method="GET", target=target, body=b"")
    for name, target in (
        ("bytes that are not ASCII", b"/api/orders/\xff\xfe"),
        ("NUL", b"/api/orders/\x00"),
        ("space", b"/api/orders/a b"),
    )
]

BAD_IDEMPOTENCY_KEYS = [
    HttpCase(
        f"Idempotency-Key {name}",
        status,
        code,
        headers=[("Idempotency-Key", value)],
        field="Idempotency-Key" if code else None,
    )
    for name, value, status, code in (
        ("of 201 characters", "k" * 201, 422, "validation_error"),
        ("of 8 KB", "k" * 8000, 422, "validation_error"),
        ("empty", "", 422, "validation_error"),
        ("with a tab inside", "a\tb", 422, "validation_error"),
        ("with DEL", "a\x7fb", 422, "validation_error"),
        ("with a C1 control", b"a\x85b", 422, "validation_error"),
        ("with SOH", b"a\x01b", 422, "validation_error"),
        ("with ESC", b"\x1b[31mred", 422, "validation_error"),
        ("of 64 KB", "k" * 65_536, 422, "validation_error"),
        # Refused by the HTTP server itself, before any handler: 400, not JSON.
        ("with a NUL", b"a\x00b", 400, None),
        ("with a bare CR", b"a\rb", 400, None),
        ("with a bare LF (a header of its own)", b"a\nb", 400, None),
    )
]

HTTP_CASES = (
    BAD_BODIES
    + CONTENT_TYPES
    + WRONG_METHODS
    + UNKNOWN_PATHS
    + BAD_KEYS
    + MALFORMED_IDS
    + BAD_IDEMPOTENCY_KEYS
)


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.name for c in HTTP_CASES])
def test_bad_http_input_is_answered_cleanly_and_writes_nothing(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory, case: HttpCase
) -> None:
    with writes_nothing(migrated_url, mallory):
        answer = send_http(
            runtime,
            case.method,
            case.target,
            body=case.body,
            headers=case.header_list(mallory),
        )

    assert answer.status < 500, answer
    assert answer.status == case.status, answer
    if case.code is not None:  # the engine's own answer, with its typed body
        error = answer.json()["error"]
        assert (error["code"], error.get("field")) == (case.code, case.field), error
        assert error["message"]
    elif case.method == "HEAD":  # no body, whatever the answer
        assert answer.body == b""
    elif answer.status == 403:  # API Gateway's answer to a route it does not have
        assert answer.json() == {"message": "Missing Authentication Token"}
    elif answer.status == 415:  # Chalice's own answer, documented in docs/openapi.yaml
        assert answer.json()["Code"] == "UnsupportedMediaType"
    assert "set-cookie" not in answer.headers


def test_an_order_id_of_another_account_is_not_found(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory, api_key: str
) -> None:
    theirs = OrderClient(runtime.http_url, api_key=api_key).place(ORDER)["orderId"]
    for spelling in (theirs, theirs.upper(), "{" + theirs + "}", f"urn:uuid:{theirs}"):
        with writes_nothing(migrated_url, mallory):
            answer = send_http(
                runtime,
                "GET",
                _order_path(spelling),
                headers=[("Authorization", f"Bearer {mallory.key}")],
            )
        assert answer.status == 404, (spelling, answer)
        assert answer.json()["error"]["code"] == "not_found"


def test_a_revoked_key_is_refused(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory
) -> None:
    key = new_api_key(migrated_url, f"e2e-revoked-{uuid.uuid4().hex[:8]}")
    with AccountStore(migrated_url, max_size=1) as store:
        Accounts(store).revoke_key(key)
    with writes_nothing(migrated_url, mallory):
        answer = send_http(
            runtime,
            "POST",
            "/api/orders/execute",
            body=GOOD_BODY.encode(),
            headers=[("Content-Type", "application/json"), ("Authorization", f"Bearer {key}")],
        )
    assert (answer.status, answer.json()["error"]["code"]) == (401, "unauthorized")


def test_an_idempotency_key_of_sql_is_stored_verbatim_and_replays(
    runtime: LocalRuntime, migrated_url: str, api_key: str
) -> None:
    """Odd but printable keys are keys: bound as parameters, stored as written."""
    client = OrderClient(runtime.http_url, api_key=api_key)
    key = f"'; DROP TABLE orders;-- {uuid.uuid4()}"
    first = client.place(ORDER, idempotency_key=key)
    again = client.place(ORDER, idempotency_key=key)

    assert again["orderId"] == first["orderId"]
    with psycopg.connect(migrated_url) as conn:
        rows = conn.execute(
            "SELECT key, order_id FROM idempotency_keys WHERE order_id = %s", (first["orderId"],)
        ).fetchall()
        assert conn.execute("SELECT count(*) FROM orders").fetchone() is not None  # still there
    assert [(k, str(o)) for k, o in rows] == [(key, first["orderId"])]


# --- WebSocket frames ----------------------------------------------------------------------


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
    frames = [
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


HANDSHAKES = [
    ("no key", "", 401),
    ("an empty key", "?apiKey=", 401),
    ("a key of nobody", f"?apiKey={SEMI_VALID_KEY}", 401),
    ("a key of SQL", "?apiKey=" + quote("' OR '1'='1", safe=""), 401),
    ("a key with a NUL", "?apiKey=%00", 401),
    ("a key of invalid UTF-8", "?apiKey=%FF%FE", 401),
    ("a key of 8 KB", "?apiKey=" + "k" * 8000, 401),
    ("an order id not a uuid", "?apiKey={key}&orderId=not-a-uuid", 422),
    ("an order id of SQL", "?apiKey={key}&orderId=" + quote("1' OR '1'='1", safe=""), 422),
    ("an order id of traversal", "?apiKey={key}&orderId=..%2F..%2Fetc%2Fpasswd", 422),
    ("an order id with a NUL", "?apiKey={key}&orderId=%00", 422),
    ("an empty order id", "?apiKey={key}&orderId=", 422),
    ("an emoji order id", "?apiKey={key}&orderId=%F0%9F%9A%80", 422),
    ("an unknown order", "?apiKey={key}&orderId=" + str(uuid.uuid4()), 404),
]


@pytest.mark.parametrize(
    ("query", "status"), [h[1:] for h in HANDSHAKES], ids=[h[0] for h in HANDSHAKES]
)
def test_a_bad_handshake_is_refused_with_a_4xx(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory, query: str, status: int
) -> None:
    url = runtime.ws_url() + query.replace("{key}", mallory.key)

    async def connect() -> int:
        async with websockets.connect(url, open_timeout=10):
            return 101

    with writes_nothing(migrated_url, mallory):
        try:
            answered = asyncio.run(connect())
        except websockets.InvalidStatus as refused:
            answered = refused.response.status_code
    assert answered == status


def test_a_handshake_with_bytes_that_are_not_ascii_in_the_query_is_not_a_500(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory
) -> None:
    url = urlsplit(runtime.ws_url())
    assert url.port is not None
    port = url.port
    request = (
        b"GET "
        + url.path.encode()
        + b"?apiKey=\xff\xfe HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{port}\r\n".encode()
        + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with (
        writes_nothing(migrated_url, mallory),
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
    ):
        sock.sendall(request)
        response = http.client.HTTPResponse(sock, method="GET")
        response.begin()
    assert 400 <= response.status < 500


# --- and after all that ----------------------------------------------------------------


def test_after_the_barrage_the_stack_is_healthy_and_a_good_order_confirms(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory, fresh_api_key: str
) -> None:
    health = send_http(runtime, "GET", "/health")
    assert (health.status, health.json()["status"]) == (200, "ok")

    client = OrderClient(runtime.http_url, api_key=fresh_api_key)
    order_id, events = follow_posted_order(client)
    assert [e["status"] for e in events] == HAPPY
    assert client.get(order_id)["status"] == "confirmed"
    _, events = execute_on_socket(runtime.ws_url(), fresh_api_key)
    assert [e["status"] for e in events] == HAPPY

    counts = row_counts(migrated_url, mallory.account_id)
    assert (counts["orders"], counts["order_events"], counts["outbox"]) == (0, 0, 0)
