"""The one place the runtime knows about Chalice: its WebSocket API client.

Chalice's WebsocketAPI builds its @connections endpoint from the event's apiId as
`https://{apiId}.execute-api.{region}.amazonaws.com/{stage}` and passes it to boto3 as an
explicit endpoint_url, which no environment variable can override. Before that happens
(it only does while `_endpoint` is unset) the runtime sets the endpoint to the local
@connections API. Any handler object without a Chalice-style `websocket_api` is left
untouched, so plain Lambda handlers are unaffected.
"""

from __future__ import annotations

from typing import Any


def point_websocket_api_at(handler: Any, endpoint: str | None) -> None:
    websocket_api: Any = getattr(handler, "websocket_api", None)
    if endpoint and getattr(websocket_api, "_endpoint", "unset") is None:
        websocket_api._endpoint = endpoint
