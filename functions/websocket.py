"""The WebSocket API: subscribe to an order's statuses, or place an order over the socket.

$connect ?apiKey=…   authenticates (or `Authorization: Bearer …`: browsers cannot set
                     headers on a WebSocket, so the query parameter is the portable
                     way); no key or a bad one refuses the handshake with 401. As an
                     API Gateway authorizer would, it records the account on the
                     connection, and later messages act for that account, while its
                     key lives: once the key is revoked, every message is refused.
         &orderId=…  also subscribes (refused with 404 for an unknown order, or another
                     account's);
$default             {"action": "subscribe", "orderId": …} | {"action": "execute", "order": {…}}
                     | {"action": "cancel", "orderId": …} | {"action": "ping"}; anything
                     else gets an error message, and the connection stays open;
$disconnect          forgets the connection and its subscriptions.

A client may close its socket before its answer is sent (a tab closed mid-request):
the answer then has nowhere to go, and that is not a failure of the function.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from chalice import Chalice, Response
from chalice.app import WebsocketEvent
from http_edge import AUTHORIZATION, MAX_BODY_BYTES, bearer_token, error_answer

from order_engine.errors import MalformedRequest, OrderEngineError, RequestError
from order_engine.notify import ConnectionGone
from order_engine.order_request import parse_json
from order_engine.orders import as_order_id
from order_engine.wiring import engine

log = logging.getLogger(__name__)

app = Chalice(app_name="order-engine-websocket")
app.experimental_feature_flags.update(["WEBSOCKETS"])


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> Response | None:
    raw = event.to_dict()
    query = raw.get("queryStringParameters") or {}
    headers = {str(name).lower(): value for name, value in (raw.get("headers") or {}).items()}
    key = bearer_token(headers.get(AUTHORIZATION)) or query.get("apiKey")
    try:
        engine().orders.connect(
            key,
            event.connection_id,
            {"sourceIp": _source_ip(event)},
            subscribe_to=query.get("orderId"),
        )
    except OrderEngineError as exc:
        answer = error_answer(exc)
        return Response(body=answer.body, status_code=answer.status)
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
    except OrderEngineError as exc:
        reply = {"type": "error", **error_answer(exc).body}
    if reply is not None:
        engine().sender.send(connection_id, reply)


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> None:
    engine().orders.disconnect(event.connection_id)


def _dispatch(connection_id: str, body: str) -> dict[str, Any] | None:
    """Parse the message, call the engine for the connection's caller, and say what
    to answer (None when the engine has answered on the socket itself)."""
    if len(body.encode()) > MAX_BODY_BYTES:
        raise RequestError("message too large", field="body")
    subscribe_to = _subscription_asked(body)
    if subscribe_to is not None:
        # One statement checks the connection's key and writes the subscription, with
        # the errors the steps below would give, in their order.
        engine().orders.subscribe_connection(connection_id, subscribe_to)
        return None  # the snapshot is the answer
    # Every message acts for the connection's key, a ping too: a revoked key's socket
    # is refused everything.
    caller = engine().accounts.authenticate_connection(connection_id)
    data = parse_json(body)
    if not isinstance(data, dict):
        raise MalformedRequest("a message must be a JSON object with an action")
    action = data.get("action")
    if action == "ping":
        return {"type": "pong"}
    if action == "subscribe":
        engine().orders.subscribe(caller, connection_id, _string(data, "orderId"))
        return None  # the snapshot is the answer
    if action == "execute":
        engine().orders.execute(caller, connection_id, data.get("order"))
        return None  # "accepted", then the snapshot
    if action == "cancel":
        order = engine().orders.cancel_order(caller, _string(data, "orderId"), field="orderId")
        return {"type": "cancelled", "orderId": str(order.id), "status": order.status.value}
    raise RequestError(
        f"unknown action {_shortened(action)}; use subscribe, execute, cancel or ping",
        field="action",
    )


def _subscription_asked(body: str) -> UUID | None:
    """The order a well-formed `subscribe` message names; None for any other message,
    which goes the long way (the connection's key checked first, then the message)."""
    try:
        data = parse_json(body)
    except OrderEngineError:
        return None
    if not isinstance(data, dict) or data.get("action") != "subscribe":
        return None
    return as_order_id(data.get("orderId"))


def _shortened(value: Any, limit: int = 40) -> str:
    """`value` as it is named in an error: its repr, cut short. The client sent it, so
    it needs only enough to recognise it, not all of a 15 KB echo."""
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit]}… ({len(shown)} characters)"


def _string(data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str):
        raise RequestError(f"{field} must be a string", field=field)
    return value


def _source_ip(event: WebsocketEvent) -> str | None:
    identity = event.to_dict().get("requestContext", {}).get("identity", {})
    return identity.get("sourceIp")
