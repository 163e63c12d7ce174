"""The API Gateway management API (`@connections`) for local WebSocket connections.

Served on the WebSocket port at `/@connections/{id}` and `/{stage}/@connections/{id}`
(boto3's apigatewaymanagementapi client with endpoint_url=http://127.0.0.1:PORT/STAGE
uses the second). Errors carry `x-amzn-ErrorType`, because botocore takes the error
code from that header: a bare 410 would reach Python as ClientError("410"), not as
`client.exceptions.GoneException`.

Like API Gateway, it answers only signed requests: a request without a SigV4
`Authorization` header (which every boto3 client sends) is 403 "Missing Authentication
Token". The signature itself is not checked: locally there is no account to check it
against, and the header keeps a stray browser or curl from pushing into, reading or
closing another client's connection by its id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from local_runtime.asgi import Receive, Scope, Send
from local_runtime.connections import Connection
from local_runtime.request_bodies import BodyTooLarge, BodyTooSlow, ClientGone, read_body

MAX_PAYLOAD = 128 * 1024  # bytes, as on AWS
BODY_IDLE_TIMEOUT = 10.0  # seconds without a byte of the body before giving up (408)
_PATH = re.compile(r"^(?:/[^/]+)?/@connections/([^/]+)/?$")


async def _respond(
    send: Send, status: int, body: Any = None, error_type: str | None = None
) -> None:
    payload = b"" if body is None and status in (200, 204) else json.dumps(body).encode()
    headers = [(b"content-type", b"application/json")]
    if error_type:
        headers.append((b"x-amzn-errortype", error_type.encode()))
    if status in (408, 413):  # the rest of the body is never read: end the connection
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _signed(scope: Scope) -> bool:
    for name, value in scope.get("headers") or []:
        if name.lower() == b"authorization":
            return bool(value.startswith(b"AWS4-HMAC-SHA256 "))
    return False


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
    if not _signed(scope):
        await _respond(
            send,
            403,
            {"message": "Missing Authentication Token"},
            "MissingAuthenticationTokenException",
        )
        return
    method = scope["method"]
    connection = connections.get(match.group(1))
    if method == "POST":
        try:
            data = await read_body(
                scope, receive, limit=MAX_PAYLOAD, idle_timeout=BODY_IDLE_TIMEOUT
            )
        except BodyTooLarge:
            await _respond(
                send,
                413,
                {"message": f"Request payload exceeds {MAX_PAYLOAD} bytes"},
                "PayloadTooLargeException",
            )
            return
        except BodyTooSlow:
            await _respond(send, 408, {"message": "Request Timeout"})
            return
        except ClientGone:
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
