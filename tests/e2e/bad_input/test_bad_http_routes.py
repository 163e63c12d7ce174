"""Bad request lines on the HTTP API: wrong methods, unknown paths and malformed order ids."""

from __future__ import annotations

import uuid

import pytest

from local_runtime.runtime import LocalRuntime
from order_engine_cli.client import OrderClient
from tests.support.bad_input import (
    HttpCase,
    Mallory,
    assert_answered_cleanly,
    order_path,
    send_http,
    writes_nothing,
)
from tests.support.stack import ORDER

WRONG_METHODS = [
    HttpCase(f"{method} {target}", 403, method=method, target=target, body=b"")
    for method, target in (
        ("PUT", "/api/orders/execute"),
        ("PATCH", "/api/orders/execute"),
        ("OPTIONS", "/api/orders/execute"),
        ("HEAD", "/api/orders/execute"),
        ("TRACE", "/api/orders/execute"),
        ("FOO", "/api/orders/execute"),
        ("POST", f"/api/orders/{uuid.UUID(int=1)}"),
        ("PUT", f"/api/orders/{uuid.UUID(int=1)}"),
        ("DELETE", "/api/orders"),
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
        ("not a uuid", order_path("not-a-uuid"), 422, "validation_error"),
        (
            "'execute' (GET on the POST route's path)",
            "/api/orders/execute",
            422,
            "validation_error",
        ),
        ("SQL tautology", order_path("1' OR '1'='1"), 422, "validation_error"),
        ("SQL drop", order_path("'; DROP TABLE orders;--"), 422, "validation_error"),
        (
            "SQL union",
            order_path("x' UNION SELECT key_hash FROM api_keys--"),
            422,
            "validation_error",
        ),
        ("dot dot", order_path(".."), 422, "validation_error"),
        ("encoded dots", order_path("%2e%2e", encode=False), 422, "validation_error"),
        (
            "double-encoded traversal",
            order_path("..%252F..%252Fetc%252Fpasswd", encode=False),
            422,
            "validation_error",
        ),
        ("NUL", order_path("\u0000"), 422, "validation_error"),
        ("uuid and a NUL", order_path(f"{uuid.uuid4()}\u0000"), 422, "validation_error"),
        ("invalid UTF-8", order_path("%FF%FE", encode=False), 422, "validation_error"),
        ("emoji", order_path("\U0001f680"), 422, "validation_error"),
        ("HTML", order_path("<img src=x onerror=alert(1)>"), 422, "validation_error"),
        ("CRLF and a header", order_path("x\r\nSet-Cookie: a=b"), 422, "validation_error"),
        ("shell", order_path("$(reboot)"), 422, "validation_error"),
        ("template", order_path("{{7*7}}"), 422, "validation_error"),
        ("10 KB", order_path("f" * 10_000), 422, "validation_error"),
        ("unknown uuid", order_path(str(uuid.uuid4())), 404, "not_found"),
        ("nil uuid", order_path(str(uuid.UUID(int=0))), 404, "not_found"),
        ("uuid in braces", order_path("{" + str(uuid.uuid4()) + "}"), 404, "not_found"),
        ("uuid as a URN", order_path(f"urn:uuid:{uuid.uuid4()}"), 404, "not_found"),
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

CASES = WRONG_METHODS + UNKNOWN_PATHS + MALFORMED_IDS


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_http_input_is_answered_cleanly_and_writes_nothing(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory, case: HttpCase
) -> None:
    assert_answered_cleanly(runtime, migrated_url, mallory, case)


def test_an_order_id_of_another_account_is_not_found(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory, api_key: str
) -> None:
    theirs = OrderClient(runtime.http_url, api_key=api_key).place(ORDER)["orderId"]
    for spelling in (theirs, theirs.upper(), "{" + theirs + "}", f"urn:uuid:{theirs}"):
        with writes_nothing(migrated_url, mallory):
            answer = send_http(
                runtime,
                "GET",
                order_path(spelling),
                headers=[("Authorization", f"Bearer {mallory.key}")],
            )
        assert answer.status == 404, (spelling, answer)
        assert answer.json()["error"]["code"] == "not_found"
