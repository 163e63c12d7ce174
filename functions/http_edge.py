"""The HTTP edge shared by api.py and websocket.py: what the engine's errors answer,
the header names both APIs read, the bearer credential, and the body-size limit.

The engine's errors say what went wrong (a code, a message, the field); this module
alone decides what that is in HTTP terms, so the two APIs cannot drift apart:

    try:
        ...
    except OrderEngineError as exc:
        answer = error_answer(exc)   # ErrorAnswer(status=422, body={"error": ...}, headers={})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from order_engine.errors import (
    IdempotencyConflict,
    InfrastructureError,
    MalformedRequest,
    NotCancellable,
    NotFound,
    OrderEngineError,
    PayloadTooLarge,
    RateLimited,
    RequestError,
    Unauthorized,
    ValidationError,
)

# Header names as they arrive: API Gateway and Chalice hand them over lower-cased.
AUTHORIZATION = "authorization"
IDEMPOTENCY_KEY = "idempotency-key"
# The engine's inputs that arrive over HTTP as headers: an answer names the header the
# client sent, not the engine's name for the value.
HEADER_OF_FIELD = {"idempotencyKey": "Idempotency-Key"}
# Answer headers, spelled as sent.
IDEMPOTENT_REPLAYED = "Idempotent-Replayed"
WWW_AUTHENTICATE = "WWW-Authenticate"
RETRY_AFTER = "Retry-After"

# The API's own limit on an order body (API Gateway's own, 10 MB, comes first): an
# order is under 300 bytes, and refusing before parsing keeps a big body cheap.
MAX_BODY_BYTES = 16 * 1024

# The status of each kind of request error; a subclass takes its nearest listed base.
STATUS_BY_ERROR: dict[type[OrderEngineError], int] = {
    MalformedRequest: 400,
    PayloadTooLarge: 413,
    ValidationError: 422,
    NotFound: 404,
    IdempotencyConflict: 409,
    NotCancellable: 409,
    Unauthorized: 401,
    RateLimited: 429,
    RequestError: 400,
    InfrastructureError: 503,
}
# What an unexpected engine error (a bug) answers: the caller's request may be fine.
UNEXPECTED_STATUS = 500


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def status_of(error: type[OrderEngineError]) -> int:
    """The HTTP status of an error class: its own, or its nearest listed base's."""
    for cls in error.__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return UNEXPECTED_STATUS


def error_answer(exc: OrderEngineError) -> ErrorAnswer:
    """The HTTP answer to `exc`: its status, `{"error": {...}}`, and the headers the
    status calls for."""
    status = status_of(type(exc))
    if isinstance(exc, RequestError):
        body = exc.to_dict()
        if body.get("field") in HEADER_OF_FIELD:
            body["field"] = HEADER_OF_FIELD[body["field"]]
        return ErrorAnswer(status, {"error": body}, _headers(exc))
    # Our own trouble: say which kind, never the detail (hosts, SQL) behind it.
    message = (
        "a dependency is unavailable; retry shortly"
        if isinstance(exc, InfrastructureError)
        else "internal error"
    )
    return ErrorAnswer(status, {"error": {"code": exc.code, "message": message}})


def _headers(exc: RequestError) -> dict[str, str]:
    if isinstance(exc, Unauthorized):  # RFC 6750: say which scheme, and if the key was bad
        return {
            WWW_AUTHENTICATE: 'Bearer realm="order-engine", error="invalid_token"'
            if exc.key_presented
            else 'Bearer realm="order-engine"'
        }
    if isinstance(exc, RateLimited):
        return {RETRY_AFTER: str(exc.retry_after)}
    return {}


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <key>` value (scheme in any case);
    None when there is none. Parsed here once, so the HTTP and WebSocket handlers
    cannot disagree on it."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def oversized(body: str | bytes, limit: int = MAX_BODY_BYTES) -> PayloadTooLarge | None:
    """The refusal (413) of a body over `limit` bytes, found before anything parses it;
    None for one within it."""
    size = len(body.encode() if isinstance(body, str) else body)
    if size > limit:
        return PayloadTooLarge(f"body of {size} bytes exceeds the limit of {limit}")
    return None
