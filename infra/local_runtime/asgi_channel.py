"""A gateway's requests from its own sandboxes, over a Unix socket instead of HTTP.

A function posts to WebSocket clients through the @connections API with boto3, five
times per followed order in this project. Over HTTP each post cost an HTTP exchange in
the sandbox (urllib3, http.client's header parsing) and another in the runtime (h11 in
Python, uvicorn's request cycle): about a third of the runtime's CPU at 600 orders a
minute. The runtime knows its sandboxes and its gateways, so it carries those requests
itself: botocore still builds, signs and parses every call exactly as it would against
API Gateway, and only the bytes in between take a shorter road.

- In the runtime, `serve_channel` serves one ASGI app (a WebSocket gateway, whose HTTP
  side is the @connections API) on a Unix socket. Each request is one frame; the app
  sees an ordinary `http` scope and answers as it would over HTTP.
- In a sandbox, `route_through_channels` registers a botocore `before-send` handler
  for the @connections API, in every botocore session (boto3's default one and any a
  handler makes, such as Chalice's websocket_api session). A request whose origin
  (scheme://host:port) belongs to a local gateway goes over that gateway's socket, one
  kept-open socket per thread; any other request, or one whose socket cannot be reached,
  goes over HTTP as before.

A frame is `!II` (the JSON head's length, the body's length), the head, the body. A
request's head is {"method", "target", "headers": [[name, value], ...]}; an answer's is
{"status", "headers"}. Requests on one socket are answered in order, one at a time (a
sandbox thread sends its next only after its answer).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import botocore.exceptions
from botocore.awsrequest import AWSResponse, HTTPHeaders

from local_runtime.asgi import ASGIApp, Message
from local_runtime.botocore_transport import (
    ClientReadTimeouts,
    RawBody,
    body_bytes,
    header_text,
    origin_and_target,
    register_in_every_session,
)

_SIZES = struct.Struct("!II")
# How long a sandbox waits for the runtime's answer when its client's read timeout is
# not known (a session without the `request-created` handler). The @connections API
# answers within its send timeout (connections.SEND_TIMEOUT, 2 s) however slow the client.
ANSWER_TIMEOUT = 10.0
SERVICE_EVENT = "before-send.apigatewaymanagementapi"


def frame(head: Mapping[str, Any], body: bytes) -> bytes:
    encoded = json.dumps(head, separators=(",", ":")).encode()
    return _SIZES.pack(len(encoded), len(body)) + encoded + body


def take_frame(buffer: bytearray) -> tuple[dict[str, Any], bytes] | None:
    """The first whole frame in `buffer`, removed from it; None until one is whole."""
    if len(buffer) < _SIZES.size:
        return None
    head_size, body_size = _SIZES.unpack_from(buffer)
    end = _SIZES.size + head_size + body_size
    if len(buffer) < end:
        return None
    head = json.loads(bytes(buffer[_SIZES.size : _SIZES.size + head_size]))
    body = bytes(buffer[_SIZES.size + head_size : end])
    del buffer[:end]
    return head, body


# -- the runtime's end -------------------------------------------------------------------


async def serve_channel(app: ASGIApp, path: str) -> asyncio.AbstractServer:
    """Serve `app` on a Unix socket at `path` (on the running loop) until closed."""
    loop = asyncio.get_running_loop()
    return await loop.create_unix_server(lambda: _ChannelProtocol(app), path)


class _ChannelProtocol(asyncio.Protocol):
    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._in_order = asyncio.Lock()  # answers leave in the order requests came
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (request := take_frame(self._buffer)) is not None:
            task = asyncio.get_running_loop().create_task(self._answer(*request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    async def _answer(self, head: dict[str, Any], body: bytes) -> None:
        async with self._in_order:
            status, headers, payload = await _call(self._app, head, body)
            if self._transport is not None:
                self._transport.write(frame({"status": status, "headers": headers}, payload))


async def _call(app: ASGIApp, head: dict[str, Any], body: bytes) -> tuple[int, list[Any], bytes]:
    target = urlsplit(head["target"])
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": head["method"],
        "scheme": "http",
        "path": unquote(target.path),  # decoded, as uvicorn gives it
        "raw_path": target.path.encode(),
        "query_string": target.query.encode(),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in head["headers"]],
        "client": None,
        "server": None,
    }
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    answer: dict[str, Any] = {"status": 500, "headers": [], "body": []}

    async def receive() -> Message:
        # The whole body, then the end of the exchange (the sandbox reads the answer).
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = [
                [k.decode("latin-1"), v.decode("latin-1")] for k, v in message.get("headers", [])
            ]
        elif message["type"] == "http.response.body":
            answer["body"].append(message.get("body", b""))

    await app(scope, receive, send)
    return answer["status"], answer["headers"], b"".join(answer["body"])


# -- a sandbox's end ---------------------------------------------------------------------


class ChannelSender:
    """botocore's `before-send` handler: a request to a local gateway's origin goes over
    that gateway's socket; None (botocore sends it over HTTP) for any other."""

    def __init__(self, channels: Mapping[str, str]) -> None:
        self._channels = dict(channels)  # origin (scheme://host:port) -> socket path
        self._local = threading.local()
        self.timeouts = ClientReadTimeouts()

    def __call__(self, **event: Any) -> Any:
        request = event["request"]  # botocore.awsrequest.AWSPreparedRequest
        origin, target = origin_and_target(request.url)
        path = self._channels.get(origin)
        if path is None:
            return None
        sock = self._socket(path)
        if sock is None:
            return None  # not served (yet): HTTP, as without a channel
        head = {
            "method": request.method,
            "target": target,
            "headers": [[name, header_text(value)] for name, value in request.headers.items()],
        }
        try:
            sock.settimeout(self.timeouts.current() or ANSWER_TIMEOUT)
            sock.sendall(frame(head, body_bytes(request.body)))
            answer, payload = _read_frame(sock)
        except TimeoutError:
            self._forget(path)
            raise botocore.exceptions.ReadTimeoutError(endpoint_url=request.url) from None
        except OSError:
            self._forget(path)
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=request.url) from None
        headers = HTTPHeaders.from_pairs(answer["headers"])
        return AWSResponse(request.url, answer["status"], headers, RawBody(payload))

    def _socket(self, path: str) -> socket.socket | None:
        sockets: dict[str, socket.socket] = self._local.__dict__.setdefault("sockets", {})
        if path not in sockets:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                return None
            sockets[path] = sock
        return sockets[path]

    def _forget(self, path: str) -> None:
        sock = self._local.__dict__.get("sockets", {}).pop(path, None)
        if sock is not None:
            sock.close()


def route_through_channels(channels: Mapping[str, str]) -> None:
    """In a sandbox: send the @connections calls of every botocore session made here,
    and of boto3's default session, over `channels` (origin -> socket path)."""
    if not channels:
        return
    sender = ChannelSender(channels)
    register_in_every_session(
        [("request-created.apigatewaymanagementapi", sender.timeouts.note), (SERVICE_EVENT, sender)]
    )


def _read_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes]:
    buffer = bytearray()
    while (whole := take_frame(buffer)) is None:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the runtime closed the channel")
        buffer += chunk
    return whole
