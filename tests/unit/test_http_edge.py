"""functions/http_edge.py: the one place that says what the engine's errors answer in
HTTP, and reads the bearer credential both APIs take."""

from __future__ import annotations

from functools import cache
from types import ModuleType

import pytest

from order_engine import errors
from tests.support.functions import load_function_module


@cache
def http_edge() -> ModuleType:
    return load_function_module("http_edge", "_edge_test_http_edge")


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("BEARER abc", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_the_bearer_credential_is_read_from_an_authorization_value(
    header: str | None, key: str | None
) -> None:
    assert http_edge().bearer_token(header) == key


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.MalformedRequest("not JSON"), 400),
        (errors.RequestError("unknown action", field="action"), 400),
        (errors.PayloadTooLarge("too big"), 413),
        (errors.ValidationError("amount is required", field="amount"), 422),
        (errors.NotFound("no such order", field="id"), 404),
        (errors.IdempotencyConflict("used before", field="Idempotency-Key"), 409),
        (errors.Unauthorized("no key", key_presented=False), 401),
        (errors.RateLimited("slow down", retry_after=3), 429),
        (errors.InfrastructureError("database unavailable: connection refused"), 503),
        (errors.PoisonMessage("not JSON"), 500),
    ],
)
def test_every_engine_error_has_one_status(error: errors.OrderEngineError, status: int) -> None:
    answer = http_edge().error_answer(error)
    assert answer.status == status
    assert answer.body["error"]["code"] == error.code


def test_an_infrastructure_error_does_not_leak_its_detail() -> None:
    answer = http_edge().error_answer(errors.InfrastructureError("host db-7.internal refused"))
    assert "db-7" not in answer.body["error"]["message"]


def test_the_answer_headers_say_how_to_retry_or_authenticate() -> None:
    edge = http_edge()
    assert edge.error_answer(errors.RateLimited("slow", retry_after=7)).headers == {
        "Retry-After": "7"
    }
    missing = edge.error_answer(errors.Unauthorized("no key", key_presented=False))
    bad = edge.error_answer(errors.Unauthorized("bad key", key_presented=True))
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="order-engine"'
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]


def test_a_body_over_the_limit_is_refused_before_parsing() -> None:
    edge = http_edge()
    assert edge.oversized(b"x" * edge.MAX_BODY_BYTES) is None
    refusal = edge.oversized("é" * (edge.MAX_BODY_BYTES // 2 + 1))  # counted in bytes
    assert isinstance(refusal, errors.PayloadTooLarge)


def test_an_error_about_a_header_borne_input_names_the_header() -> None:
    """The engine names the value (idempotencyKey); over HTTP it came as a header, so the
    answer names the header the client sent."""
    answer = http_edge().error_answer(errors.IdempotencyConflict("used", field="idempotencyKey"))
    assert answer.body["error"]["field"] == "Idempotency-Key"
