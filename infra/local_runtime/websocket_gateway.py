"""The local WebSocket API: one ASGI app per API, WebSocket clients and @connections.

- $connect runs before the handshake completes: an exception or timeout refuses it with
  502, a non-2xx statusCode from the handler refuses it with that status.
- Each message picks its route with the API's RouteSelectionExpression (fallback
  $default; never $connect or $disconnect) and is handled in arrival order per
  connection. On a two-way route (one with a route response) a handler result with a
  `body` is sent back to the client; a one-way route sends nothing back. A failing
  handler makes the client receive API Gateway's {"message": "Internal server error"}.
- $disconnect fires exactly once per connection, however it ends, after the messages
  already received have been handled.
- Messages over 128 KB and frames over 32 KB close the connection with 1009
  (server_protocols.py), and a binary frame with 1003 (API Gateway takes text frames
  only); connections idle longer than the idle timeout are closed with 1001; shutdown
  closes all with 1001 (going away); a client that does not read what it is sent is
  dropped with 1008 (connections.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from local_runtime.asgi import Receive, Scope, Send
from local_runtime.connections import Connection
from local_runtime.functions import InvocationResult, LambdaFunction
from local_runtime.http_gateway import _lifespan
from local_runtime.management_api import handle_management
from local_runtime.server_protocols import ABORT_EXTENSION, MAX_MESSAGE_BYTES
from local_runtime.specs import WebSocketApiSpec
from local_runtime.websocket_events import (
    WsApiContext,
    WsClient,
    connect_event,
    disconnect_event,
    message_event,
    new_connection_id,
    select_route,
)

log = logging.getLogger(__name__)

GOING_AWAY = 1001
MESSAGE_TOO_BIG = 1009
# "API Gateway WebSocket APIs don't currently support binary frames in incoming message
# payloads. If a client app sends a binary frame, API Gateway rejects it and disconnects
# the client with code 1003." (developer guide, "Binary media types for WebSocket APIs")
UNSUPPORTED_DATA = 1003


def _connect_verdict(result: InvocationResult) -> tuple[int, str | None]:
    """(HTTP status, Sec-WebSocket-Protocol to accept) from a $connect invocation."""
    if not result.succeeded:
        return 502, None
    value = result.value
    if not isinstance(value, dict):
        return 200, None
    try:
        status = int(value.get("statusCode", 200))
    except (TypeError, ValueError):
        return 502, None
    headers = {str(k).lower(): v for k, v in (value.get("headers") or {}).items()}
    protocol = headers.get("sec-websocket-protocol")
    return status, str(protocol) if protocol else None


class WebSocketGateway:
    def __init__(
        self,
        spec: WebSocketApiSpec,
        functions: Mapping[str, LambdaFunction],
        *,
        domain_name: str,
        idle_timeout: float = 600.0,
    ) -> None:
        self.spec = spec
        self.api = WsApiContext(spec.api_id, spec.stage, domain_name)
        self.routes = {key: functions[logical] for key, logical in spec.routes.items()}
        self.idle_timeout = idle_timeout
        self.connections: dict[str, Connection] = {}
        self._handlers: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await handle_management(scope, receive, send, self.connections)
        elif scope["type"] == "websocket":
            task = asyncio.current_task()
            if task is not None:
                self._handlers.add(task)
            try:
                await self._serve(scope, receive, send)
            finally:
                if task is not None:
                    self._handlers.discard(task)

    # -- one connection ----------------------------------------------------------------

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        self._ensure_watchdog()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        user_agent = next((v for k, v in headers if k.lower() == "user-agent"), None)
        client = WsClient(
            connection_id=new_connection_id(),
            connected_at_ms=int(time.time() * 1000),
            source_ip=(scope.get("client") or ("127.0.0.1", 0))[0],
            user_agent=user_agent,
        )
        subprotocol = None
        if "$connect" in self.routes:
            query = parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True)
            event = connect_event(self.api, client, headers, query)
            result = await self.routes["$connect"].invoke_async(event)
            status, subprotocol = _connect_verdict(result)
            if not 200 <= status < 300:
                await self._refuse(send, status)
                return
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        abort = (scope.get("extensions") or {}).get(ABORT_EXTENSION)
        connection = Connection(client, send, abort)
        self.connections[client.connection_id] = connection
        dispatcher = asyncio.create_task(self._dispatch(connection))
        try:
            await self._receive_loop(connection, receive)
        finally:
            self.connections.pop(client.connection_id, None)
            connection.mark_closed(1006, "")  # no-op unless the loop died unexpectedly
            await connection.inbox.put(None)
            await dispatcher
            await self._disconnect(connection)

    async def _refuse(self, send: Send, status: int) -> None:
        if status in (401, 403):
            message = "Forbidden"
        elif status >= 500:
            message = "Internal server error"
        else:
            message = "Refused"
        body = json.dumps({"message": message}).encode()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})

    async def _receive_loop(self, connection: Connection, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                code = int(message.get("code") or 1005)
                # uvicorn refuses far-too-big frames itself; say it the gateway's way.
                reason = "Message too big" if code == MESSAGE_TOO_BIG else message.get("reason")
                connection.mark_closed(code, str(reason or ""))
                return
            if message["type"] != "websocket.receive":
                continue
            data = message.get("text")
            if data is None:  # a binary frame
                await connection.close(UNSUPPORTED_DATA, "Binary frames are not supported")
                return
            if len(data.encode()) > MAX_MESSAGE_BYTES:
                await connection.close(MESSAGE_TOO_BIG, "Message too big")
                return
            connection.touch()
            await connection.inbox.put(data)

    async def _dispatch(self, connection: Connection) -> None:
        while (data := await connection.inbox.get()) is not None:
            try:
                await self._handle(connection, data)
            except Exception:  # a bug of ours: say so, and keep serving the connection
                log.exception("handling a message of connection %s", connection.id)
                await self._error_to_client(connection, "Internal server error")

    async def _handle(self, connection: Connection, data: str | bytes) -> None:
        route = select_route(self.spec.route_selection_expression, data, list(self.routes))
        if route is None:
            await self._error_to_client(connection, "Forbidden")
            return
        event = message_event(self.api, connection.client, route, data)
        result = await self.routes[route].invoke_async(event)
        if not result.succeeded:
            await self._error_to_client(
                connection, "Internal server error", event["requestContext"]["requestId"]
            )
            return
        if route not in self.spec.two_way_routes:
            return  # one-way: API Gateway discards the integration's answer
        body = result.value.get("body") if isinstance(result.value, dict) else None
        if body is not None:
            await connection.send_data(body if isinstance(body, str) else json.dumps(body))

    async def _error_to_client(
        self, connection: Connection, message: str, request_id: str = ""
    ) -> None:
        await connection.send_data(
            json.dumps(
                {
                    "message": message,
                    "connectionId": connection.id,
                    "requestId": request_id,
                }
            )
        )

    async def _disconnect(self, connection: Connection) -> None:
        function = self.routes.get("$disconnect")
        if function is None:
            return
        event = disconnect_event(
            self.api, connection.client, connection.close_code, connection.close_reason
        )
        await function.invoke_async(event)

    # -- idle timeout and shutdown ------------------------------------------------------

    def _ensure_watchdog(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._close_idle())

    async def _close_idle(self) -> None:
        interval = max(0.05, min(1.0, self.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            for connection in list(self.connections.values()):
                if now - connection.last_active > self.idle_timeout:
                    await connection.close(GOING_AWAY, "Going away")

    async def shutdown(self, timeout: float) -> None:
        """Close every connection with 1001 and wait (bounded) for their $disconnect."""
        for connection in list(self.connections.values()):
            await connection.close(GOING_AWAY, "Going away")
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=timeout)
        if self._watchdog is not None:
            self._watchdog.cancel()
