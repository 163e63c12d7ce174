"""uvicorn's protocols with the limits API Gateway enforces below the ASGI layer.

- WebSocket: a frame over 32 KB closes the connection with 1009, however small the
  message; a message of up to 128 KB sent in several frames is fine (API Gateway's
  quotas: "WebSocket frame size 32 KB", "Message payload size 128 KB").
- WebSocket: the gateway can drop a connection at once (`abort` in the scope's
  extensions), even when its socket buffer is full and no close frame could be sent.
- HTTP: a client that has not finished sending its request headers within
  `HEADER_TIMEOUT` seconds of connecting (or of their first byte on a kept-alive
  connection) gets 408 and the connection is closed; one that sent nothing at all is
  just closed. So slow clients cannot hold connections open forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

MAX_FRAME_BYTES = 32 * 1024
MAX_MESSAGE_BYTES = 128 * 1024
HEADER_TIMEOUT = 10.0
ABORT_EXTENSION = "local_runtime.abort"


class ApiGatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # websockets (>= 16) checks both while parsing, before buffering the payload,
        # and fails the connection with 1009 (its parser error reaches the app as a
        # websocket.disconnect with that code).
        self.conn.max_message_size = MAX_MESSAGE_BYTES
        self.conn.max_fragment_size = MAX_FRAME_BYTES

    def handle_parser_exception(self) -> None:
        """A frame or message over the limit (or a protocol error): send the close frame
        and end our side of the stream (what websockets asks for with an empty chunk),
        then read and discard until the client closes too. Closing the socket at once,
        with the rest of the client's frames still arriving, would reset the connection
        and lose the close frame: the client would see 1006 instead of 1009."""
        if self.close_sent:
            return  # already failed; this is more of the client's data, discarded
        assert self.conn.close_sent is not None
        code, reason = self.conn.close_sent.code, self.conn.close_sent.reason
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        output = self.conn.data_to_send()
        self.transport.write(b"".join(output))
        if b"" in output and self.transport.can_write_eof():
            self.transport.write_eof()
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    async def run_asgi(self) -> None:
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[ABORT_EXTENSION] = self.abort
        await super().run_asgi()

    def abort(self, code: int, reason: str) -> None:
        """Queue a close frame (read only if the client ever reads again) and drop the
        connection now: what a gateway does to a client that stopped reading."""
        if self.transport is None or self.transport.is_closing():
            return
        if not self.close_sent and self.handshake_complete:
            # InvalidState: the protocol is already past closing; just drop it then.
            with contextlib.suppress(InvalidState):
                self.conn.send_close(code, reason)
                self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
        self.transport.abort()


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for each request's headers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._started_headers = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and data:
            self._started_headers = True
            self._arm_header_deadline()  # part of a request's headers
        else:
            self._started_headers = False
            self._cancel_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(HEADER_TIMEOUT, self._headers_too_slow)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        transport = self.transport
        if transport.is_closing() or transport.get_protocol() is not self:
            return  # closed, or upgraded to a WebSocket meanwhile
        if self.conn.their_state is not h11.IDLE:
            return
        if not self._started_headers:
            # Not a byte of a request (a browser's preconnect, say): an answer could be
            # taken for the reply to the request it sends next, so just close.
            transport.close()
            return
        body = json.dumps({"message": "Request Timeout"}).encode()
        head = (
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        transport.write(head.encode() + body)
        transport.close()
