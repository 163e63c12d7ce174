"""Helpers of the bad-input tests (tests/e2e/bad_input/): the account every bad request
speaks for ("mallory"), the row counts that prove a request wrote nothing, and HTTP byte
for byte on a raw socket, so that anything reaches the server as written."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import psycopg

from local_runtime.runtime import LocalRuntime
from tests.support.stack import ORDER

GOOD_BODY = json.dumps(ORDER)
SEMI_VALID_KEY = "oe_live_0123abcd_" + "e" * 43  # the shape of a key, of no account


# --- the database's view --------------------------------------------------------------


@dataclass(frozen=True)
class Mallory:
    """The account every bad request speaks for."""

    key: str
    account_id: str


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


def order_path(raw: str, *, encode: bool = True) -> str:
    return "/api/orders/" + (quote(raw, safe="") if encode else raw)


def assert_answered_cleanly(
    runtime: LocalRuntime, database_url: str, mallory: Mallory, case: HttpCase
) -> None:
    """Send `case` as mallory and check its answer: never a 5xx, the expected status, the
    engine's typed error naming the field, and not a row written."""
    with writes_nothing(database_url, mallory):
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
