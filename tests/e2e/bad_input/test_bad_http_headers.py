"""Bad headers on the HTTP API: content types, API keys and idempotency keys."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from local_runtime.runtime import LocalRuntime
from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts
from order_engine.database import Database
from order_engine_cli.client import OrderClient
from tests.support.bad_input import (
    GOOD_BODY,
    SEMI_VALID_KEY,
    HttpCase,
    Mallory,
    assert_answered_cleanly,
    send_http,
    writes_nothing,
)
from tests.support.stack import ORDER, new_api_key

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

CASES = CONTENT_TYPES + BAD_KEYS + BAD_IDEMPOTENCY_KEYS


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_http_input_is_answered_cleanly_and_writes_nothing(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory, case: HttpCase
) -> None:
    assert_answered_cleanly(runtime, migrated_url, mallory, case)


def test_a_revoked_key_is_refused(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory
) -> None:
    key = new_api_key(migrated_url, f"e2e-revoked-{uuid.uuid4().hex[:8]}")
    with Database(migrated_url, max_size=1) as database:
        Accounts(AccountStore(database)).revoke_key(key)
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
