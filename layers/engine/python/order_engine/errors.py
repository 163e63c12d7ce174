"""The one exception hierarchy of the engine.

Every failure the engine raises is an `OrderEngineError`, and its class says how the
caller must react, so nobody has to guess from message text:

- `RequestError` and subclasses: the caller sent something wrong; write nothing and
  tell them (functions/http_edge.py says what each answers in HTTP).
- `TransientError`: the step may succeed later (venue timeout); retry with backoff,
  bounded by the attempt limit.
- `BusinessError`: the order cannot succeed (slippage exceeded, no route); fail it now.
- `InfrastructureError`: our own dependency is down (database); leave the order as it
  is and let the message return to its queue (and, in the end, the dead-letter queue).
"""

from __future__ import annotations

from typing import Any


class OrderEngineError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "internal_error"


# --- the caller's fault --------------------------------------------------------------


class RequestError(OrderEngineError):
    """The request is wrong: `message` says what, `field` (when known) where."""

    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class MalformedRequest(RequestError):
    """The body is not JSON, or not a JSON object."""

    code = "malformed_request"


class PayloadTooLarge(RequestError):
    code = "payload_too_large"


class ValidationError(RequestError):
    """A field has the wrong type or value; `field` names it (dotted path)."""

    code = "validation_error"


class NotFound(RequestError):
    code = "not_found"


class IdempotencyConflict(RequestError):
    """The idempotency key was used before with a different request body."""

    code = "idempotency_conflict"


class NotCancellable(RequestError):
    """The order is past cancelling (its transaction is built, or it has ended);
    `status` is where it is now."""

    code = "not_cancellable"

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message, field="status")
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "status": self.status}


class Unauthorized(RequestError):
    """No API key, or one that is unknown or revoked. `key_presented` tells a missing
    key from a bad one."""

    code = "unauthorized"

    def __init__(self, message: str, *, key_presented: bool) -> None:
        super().__init__(message)
        self.key_presented = key_presented


class RateLimited(RequestError):
    """The key used up its requests for the current window; `retry_after` is the
    number of whole seconds until the next window opens."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "retryAfter": self.retry_after}


# --- the order's fate ------------------------------------------------------------------


class StepError(OrderEngineError):
    """A step of the order's pipeline failed; `reason` is what users are shown."""

    code = "step_failed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(StepError):
    """Worth retrying: the venue timed out or answered with an error."""

    code = "transient"


class VenueTimeout(TransientError):
    code = "venue_timeout"


class VenueUnavailable(TransientError):
    code = "venue_unavailable"


class BusinessError(StepError):
    """The order cannot succeed; it fails at once, without retries."""

    code = "business"


class SlippageExceeded(BusinessError):
    code = "slippage_exceeded"


class NoRoute(BusinessError):
    code = "no_route"


# --- our own dependencies ------------------------------------------------------------


class InfrastructureError(OrderEngineError):
    """PostgreSQL or SQS is unavailable; the message goes back to its queue."""

    code = "infrastructure_unavailable"


class PoisonMessage(OrderEngineError):
    """A queue message that can never be processed (not JSON, unknown step, NUL bytes).

    Its record fails, so after maxReceiveCount SQS parks it in the dead-letter queue,
    where `order-engine dlq show` lets an operator read it.
    """

    code = "poison_message"


class RetryLater(Exception):
    """The step failed transiently; try the message again after `delay_seconds`.

    Not an OrderEngineError: no caller is told of it. The pipeline raises it to its
    consumer (consumers.py), which makes the message visible again after the delay."""

    def __init__(self, reason: str, delay_seconds: int) -> None:
        super().__init__(f"{reason} (retry in {delay_seconds} s)")
        self.reason = reason
        self.delay_seconds = delay_seconds
