"""The HTTP API (API Gateway REST proxy -> Chalice): place an order, list the caller's
orders, read one, cancel one, health.

Every route but /health needs `Authorization: Bearer <key>`; the engine checks the key
(order_engine.accounts), this module only takes it from the request. What an engine
error answers is http_edge's to say.
"""

from __future__ import annotations

from collections.abc import Callable

from chalice import Chalice, Response
from http_edge import (
    AUTHORIZATION,
    IDEMPOTENCY_KEY,
    IDEMPOTENT_REPLAYED,
    bearer_token,
    error_answer,
    oversized,
)

from order_engine.accounts import Caller
from order_engine.errors import InfrastructureError, OrderEngineError
from order_engine.wiring import engine

app = Chalice(app_name="order-engine-api")


def _answer(call: Callable[[], Response]) -> Response:
    """Run `call`, turning the engine's errors into their HTTP answers."""
    try:
        return call()
    except OrderEngineError as exc:
        answer = error_answer(exc)
        headers: dict[str, str | list[str]] = {**answer.headers}
        return Response(body=answer.body, status_code=answer.status, headers=headers)


def _caller() -> Caller:
    request = app.current_request
    assert request is not None
    return engine().accounts.authenticate(bearer_token(request.headers.get(AUTHORIZATION)))


@app.route("/api/orders/execute", methods=["POST"])
def execute_order() -> Response:
    request = app.current_request
    assert request is not None

    def place() -> Response:
        body = request.raw_body or b""
        # The key first (401), then the body's size (413, not counted), then the rate
        # limit (429): the statement that checks the key counts the request too.
        too_large = oversized(body)
        caller = engine().orders.admit(
            bearer_token(request.headers.get(AUTHORIZATION)), count=too_large is None
        )
        if too_large is not None:
            raise too_large
        placed = engine().orders.place_order_json(
            caller, body, idempotency_key=request.headers.get(IDEMPOTENCY_KEY)
        )
        ws_url = engine().settings.websocket_url
        answer = {
            "orderId": str(placed.order.id),
            "status": placed.order.status,
            "wsUrl": f"{ws_url}?orderId={placed.order.id}" if ws_url else None,
        }
        headers: dict[str, str | list[str]] = {}
        if not placed.created:
            headers[IDEMPOTENT_REPLAYED] = "true"
        return Response(body=answer, status_code=202, headers=headers)

    return _answer(place)


@app.route("/api/orders", methods=["GET"])
def list_orders() -> Response:
    request = app.current_request
    assert request is not None
    return _answer(
        lambda: Response(
            body=engine().orders.list_orders(_caller(), request.query_params).to_dict()
        )
    )


@app.route("/api/orders/{order_id}", methods=["GET"])
def get_order(order_id: str) -> Response:
    return _answer(lambda: Response(body=engine().orders.get_order(_caller(), order_id)))


@app.route("/api/orders/{order_id}", methods=["DELETE"])
def cancel_order(order_id: str) -> Response:
    return _answer(
        lambda: Response(body=engine().orders.cancel_order(_caller(), order_id).to_dict())
    )


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
