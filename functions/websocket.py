"""The WebSocket API: subscribe to an order's statuses, or place an order over the socket.

$connect ?apiKey=…   authenticates (or `Authorization: Bearer …`: browsers cannot set
                     headers on a WebSocket, so the query parameter is the portable
                     way); no key or a bad one refuses the handshake with 401. As an
                     API Gateway authorizer would, it records the account on the
                     connection, and later messages act for that account.
         &orderId=…  also subscribes (refused with 404 for an unknown order, or another
                     account's);
$default             {"action": "subscribe", "orderId": …} | {"action": "execute", "order": {…}}
                     | {"action": "ping"}; anything else gets an error message, and the
                     connection stays open;
$disconnect          forgets the connection and its subscriptions.

A client may close its socket before its answer is sent (a tab closed mid-request):
the answer then has nowhere to go, and that is not a failure of the function.
"""

from __future__ import annotations

import logging
from typing import Any

from chalice import Chalice, Response
from chalice.app import WebsocketEvent

from order_engine.accounts import bearer_token
from order_engine.errors import MalformedRequest, OrderEngineError, RequestError
from order_engine.notify import ConnectionGone
from order_engine.order_request import parse_json
from order_engine.wiring import engine

log = logging.getLogger(__name__)

app = Chalice(app_name="order-engine-websocket")
app.experimental_feature_flags.update(["WEBSOCKETS"])


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> Response | None:
    raw = event.to_dict()
    query = raw.get("queryStringParameters") or {}
    headers = {str(name).lower(): value for name, value in (raw.get("headers") or {}).items()}
    key = bearer_token(headers.get("authorization")) or query.get("apiKey")
    try:
        caller = engine().accounts.authenticate(key)
        engine().orders.connect(
            caller,
            event.connection_id,
            {"sourceIp": _source_ip(event)},
            subscribe_to=query.get("orderId"),
        )
    except RequestError as exc:
        return Response(body={"error": exc.to_dict()}, status_code=exc.http_status)
    return None


@app.on_ws_message()
def message(event: WebsocketEvent) -> None:
    try:
        _answer(event.connection_id, event.body)
    except ConnectionGone:  # an order it placed goes on; its statuses stay readable
        log.info("connection %s closed before its answer", event.connection_id)


def _answer(connection_id: str, body: str) -> None:
    try:
        reply = _dispatch(connection_id, body)
    except RequestError as exc:
        reply = {"type": "error", "error": exc.to_dict()}
    except OrderEngineError as exc:
        reply = {"type": "error", "error": {"code": exc.code, "message": str(exc)}}
    if reply is not None:
        engine().sender.send(connection_id, reply)


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> None:
    engine().orders.disconnect(event.connection_id)


def _dispatch(connection_id: str, body: str) -> dict[str, Any] | None:
    if len(body.encode()) > 16 * 1024:
        raise RequestError("message too large", field="body")
    data = parse_json(body)
    if not isinstance(data, dict):
        raise MalformedRequest("a message must be a JSON object with an action")
    action = data.get("action")
    orders = engine().orders
    if action == "ping":
        return {"type": "pong"}
    if action == "subscribe":
        caller = engine().accounts.authenticate_connection(connection_id)
        orders.subscribe(caller, connection_id, _string(data, "orderId"))
        return None  # the snapshot is the answer
    if action == "execute":
        caller = engine().accounts.authenticate_connection(connection_id)
        placed = orders.place_order(caller, data.get("order"), idempotency_key=None)
        engine().sender.send(connection_id, {"type": "accepted", "orderId": str(placed.order.id)})
        orders.subscribe(caller, connection_id, placed.order.id)
        return None
    raise RequestError(f"unknown action {action!r}; use subscribe, execute or ping", field="action")


def _string(data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str):
        raise RequestError(f"{field} must be a string", field=field)
    return value


def _source_ip(event: WebsocketEvent) -> str | None:
    identity = event.to_dict().get("requestContext", {}).get("identity", {})
    return identity.get("sourceIp")
