"""The HTTP API (API Gateway REST proxy -> Chalice): place an order, read it, health."""

from __future__ import annotations

from typing import Any

from chalice import Chalice, Response

from order_engine.errors import InfrastructureError, RequestError
from order_engine.wiring import engine

app = Chalice(app_name="order-engine-api")


def _error(status: int, code: str, message: str, field: str | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return Response(body={"error": error}, status_code=status)


def _answer(call: Any) -> Response:
    """Run `call`, turning the engine's errors into their HTTP answers."""
    try:
        return call()
    except RequestError as exc:
        return _error(exc.http_status, exc.code, exc.message, exc.field)
    except InfrastructureError as exc:
        return _error(503, exc.code, "a dependency is unavailable; retry shortly")


@app.route("/api/orders/execute", methods=["POST"])
def execute_order() -> Response:
    request = app.current_request
    assert request is not None

    def place() -> Response:
        placed = engine().orders.place_order_json(
            request.raw_body or b"", idempotency_key=request.headers.get("idempotency-key")
        )
        ws_url = engine().settings.websocket_url
        body = {
            "orderId": placed.order.id,
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
    return _answer(lambda: Response(body=engine().orders.get_order(order_id)))


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
