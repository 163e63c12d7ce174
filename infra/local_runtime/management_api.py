"""The API Gateway management API (`@connections`) for local WebSocket connections.

Served on the WebSocket port at `/@connections/{id}` and `/{stage}/@connections/{id}`
(boto3's apigatewaymanagementapi client with endpoint_url=http://127.0.0.1:PORT/STAGE
uses the second). Errors carry `x-amzn-ErrorType`, because botocore takes the error
code from that header: a bare 410 would reach Python as ClientError("410"), not as
`client.exceptions.GoneException`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from local_runtime.asgi import Receive, Scope, Send
from local_runtime.connections import Connection

MAX_PAYLOAD = 128 * 1024  # bytes, as on AWS
_PATH = re.compile(r"^(?:/[^/]+)?/@connections/([^/]+)/?$")


async def _respond(
    send: Send, status: int, body: Any = None, error_type: str | None = None
) -> None:
    payload = b"" if body is None and status in (200, 204) else json.dumps(body).encode()
    headers = [(b"content-type", b"application/json")]
    if error_type:
        headers.append((b"x-amzn-errortype", error_type.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None as soon as it grows past `limit`."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body"):
            return body


async def handle_management(
    scope: Scope,
    receive: Receive,
    send: Send,
    connections: Mapping[str, Connection],
    *,
    delete_close_code: int = 1000,
) -> None:
    match = _PATH.match(scope["path"])
    if match is None:
        await _respond(send, 403, {"message": "Forbidden"}, "ForbiddenException")
        return
    method = scope["method"]
    connection = connections.get(match.group(1))
    if method == "POST":
        data = await _read_body(receive, MAX_PAYLOAD)
        if data is None:
            await _respond(
                send,
                413,
                {"message": f"Request payload exceeds {MAX_PAYLOAD} bytes"},
                "PayloadTooLargeException",
            )
            return
        text: str | bytes
        try:
            text = data.decode("utf-8")  # text frame when it is text, binary otherwise
        except UnicodeDecodeError:
            text = data
        if connection is not None and await connection.send_data(text):
            await _respond(send, 200)
            return
    elif method == "GET":
        if connection is not None and not connection.closed:
            await _respond(send, 200, connection.info())
            return
    elif method == "DELETE":
        if connection is not None and await connection.close(delete_close_code, ""):
            await _respond(send, 204)
            return
    else:
        await _respond(send, 403, {"message": "Forbidden"}, "ForbiddenException")
        return
    await _respond(send, 410, {"message": None}, "GoneException")
