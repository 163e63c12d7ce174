"""The HTTP API (API Gateway REST proxy -> Chalice): place an order, read it, health.

Every route but /health needs `Authorization: Bearer <key>`; the engine checks the key
(order_engine.accounts), this module only takes it from the request.
"""

from __future__ import annotations

from typing import Any

from chalice import Chalice, Response

from order_engine.accounts import Caller, bearer_token
from order_engine.errors import InfrastructureError, RateLimited, RequestError, Unauthorized
from order_engine.wiring import engine

app = Chalice(app_name="order-engine-api")


def _request_error(exc: RequestError) -> Response:
    headers: dict[str, str | list[str]] = {}
    if isinstance(exc, Unauthorized):  # RFC 6750: say which scheme, and if the key was bad
        headers["WWW-Authenticate"] = (
            'Bearer realm="order-engine", error="invalid_token"'
            if exc.key_presented
            else 'Bearer realm="order-engine"'
        )
    elif isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    return Response(body={"error": exc.to_dict()}, status_code=exc.http_status, headers=headers)


def _answer(call: Any) -> Response:
    """Run `call`, turning the engine's errors into their HTTP answers."""
    try:
        return call()
    except RequestError as exc:
        return _request_error(exc)
    except InfrastructureError as exc:
        error = {"code": exc.code, "message": "a dependency is unavailable; retry shortly"}
        return Response(body={"error": error}, status_code=503)


def _caller() -> Caller:
    request = app.current_request
    assert request is not None
    return engine().accounts.authenticate(bearer_token(request.headers.get("authorization")))


@app.route("/api/orders/execute", methods=["POST"])
def execute_order() -> Response:
    request = app.current_request
    assert request is not None

    def place() -> Response:
        placed = engine().orders.place_order_json(
            _caller(),
            request.raw_body or b"",
            idempotency_key=request.headers.get("idempotency-key"),
        )
        ws_url = engine().settings.websocket_url
        body = {
            "orderId": str(placed.order.id),
            "status": placed.order.status,
            "wsUrl": f"{ws_url}?orderId={placed.order.id}" if ws_url else None,
        }
        headers: dict[str, str | list[str]] = {}
        if not placed.created:
            headers["Idempotent-Replayed"] = "true"
        return Response(body=body, status_code=202, headers=headers)

    return _answer(place)


@app.route("/api/orders/{order_id}", methods=["GET"])
def get_order(order_id: str) -> Response:
    return _answer(lambda: Response(body=engine().orders.get_order(_caller(), order_id)))


@app.route("/health", methods=["GET"])
def health() -> Response:
    try:
        checks = engine().orders.health()
    except InfrastructureError as exc:  # not even configured
        checks = {"configuration": f"down: {exc}"}
    healthy = all(state == "ok" for state in checks.values())
    return Response(
        body={"status": "ok" if healthy else "degraded", "checks": checks},
        status_code=200 if healthy else 503,
    )
