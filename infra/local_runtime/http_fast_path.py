"""uvicorn's httptools protocol for the requests h11 reads the same way, h11 for the rest.

httptools (llhttp, in C) parses a request in a fraction of h11's CPU: with h11, the
gateways' HTTP parsing and response writing were the largest share of the runtime's
own CPU at 600 orders a minute (one POST and five @connections posts per order). But
llhttp refuses some requests that h11 passes to the gateway, and its 400 is not API
Gateway's answer: an unknown method (`FOO /x`, API Gateway's 403 "Missing
Authentication Token") or a control character in a header value (the API's own JSON
error). And it reads a few requests differently from h11 (an absolute-form target, a
fragment, an HTTP/1.1 request without Host, Transfer-Encoding other than `chunked`,
HTTP/1.0, whose answers uvicorn's httptools protocol may send chunked).

So h11 stays the reference, and httptools only reads what both read alike. A request
that llhttp refuses, or that is one of those (`_plain_head`), is handed with the bytes
of its head to h11 (server_protocols.DeadlineH11Protocol), which then serves the rest of
the connection exactly as it served every connection before: same answers, same 400s.
The hand-off waits for the answers to the requests before it on the connection.

What cannot be handed on is answered as uvicorn answers it, which is what h11 answered
too: a broken body (a bad chunk: 400 and close), and a bad head pipelined in one read
behind a request whose body began in an earlier read (its start is not known).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import httptools
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE as MAX_INCOMPLETE_HEAD
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from local_runtime.server_protocols import DeadlineH11Protocol, HeaderDeadline

# Where the parser is in the request it reads.
IDLE, HEAD, BODY = "idle", "head", "body"
# An origin-form target of printable ASCII without a fragment: h11 and httptools give
# such a target the same path and query string.
_PLAIN_TARGET = re.compile(rb"/[\x21\x22\x24-\x7e]*")


class NotPlain(Exception):
    """A request the fast path does not read (raised in a parser callback)."""


class ApiGatewayHttpToolsProtocol(HeaderDeadline, HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading = IDLE
        # The bytes read since the parser was last between requests at the start of a
        # read, while the request under way is still in its head (None once it is past
        # it): what h11 needs to read that request if it is handed on.
        self._unread: bytes | None = b""
        self._completed = 0  # requests that ended within `_unread`
        self._handoff: bytearray | None = None  # for h11, once the answers before it are out
        # h11 refuses a head still incomplete at this size (llhttp has no limit): a
        # longer one goes to h11, which answers as it did.
        self._max_head = self.config.h11_max_incomplete_event_size or MAX_INCOMPLETE_HEAD

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _awaiting_headers(self) -> bool:
        return self._reading != BODY

    def data_received(self, data: bytes) -> None:
        if self._handoff is not None:  # a bad request waits for h11; so does what follows
            self._handoff += data
            return
        if self._reading == IDLE:
            self._unread, self._completed = data, 0
            if data[:1] in (b"\r", b"\n"):  # llhttp skips blank lines, h11 refuses them
                self._refuse()
                return
        elif self._reading == HEAD and self._unread is not None:
            self._unread += data
        else:
            self._unread = None
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # as uvicorn does
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            self._refuse()
            return
        if (
            self._reading == HEAD
            and self._unread is not None
            and len(self._unread) > self._max_head
        ):
            self._refuse()
            return
        self._after_data(self._reading == HEAD)

    # -- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reading = HEAD
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if not self._plain_head():
            raise NotPlain
        self._reading = BODY
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:  # the one just made for this request
            self.cycle.__class__ = SpellingCycle

    def on_message_complete(self) -> None:
        self._reading = IDLE
        self._completed += 1
        super().on_message_complete()

    def _plain_head(self) -> bool:
        """Whether h11 would read this head as httptools has (see the module's doc)."""
        # HTTP/1.0 too goes to h11: uvicorn's httptools protocol would send a body without
        # Content-Length chunked, which a 1.0 client cannot read (h11 ends it by closing).
        if self.parser.get_http_version() != "1.1" or not _PLAIN_TARGET.fullmatch(self.url):
            return False
        hosts = lengths = codings = 0
        for name, value in self.headers:
            if name == b"host":
                hosts += 1
            elif name == b"content-length":
                lengths += 1
            elif name == b"transfer-encoding":
                codings += 1
                if value.strip().lower() != b"chunked":
                    return False
        if hosts != 1 or lengths > 1 or codings > 1:
            return False
        if codings and lengths:
            return False
        # An upgrade other than to a WebSocket (h2c, CONNECT): h11 reads it as a request.
        return not self.parser.should_upgrade() or self._should_upgrade()

    # -- handing a connection on to h11 ---------------------------------------------------

    def _refuse(self) -> None:
        """httptools did not read a request: h11 reads it, or (if its bytes are not known)
        it gets uvicorn's 400, as h11 would answer a broken body."""
        if self._unread is None or self._reading == BODY:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        start = _start_of_request(self._unread, self._completed) if self._completed else 0
        rest = self._unread[start:]
        self._unread = None
        if (self.cycle is not None and not self.cycle.response_complete) or self.pipeline:
            self._handoff = bytearray(rest)  # after the answers to the requests before it
            self._cancel_header_deadline()
            self.flow.pause_reading()
            return
        self._hand_on(rest)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's 400 (and close) with the headers of its h11 protocol's."""
        body = msg.encode("ascii")
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()

    def on_response_complete(self) -> None:
        if self._handoff is None or self.pipeline:
            super().on_response_complete()
            return
        self.server_state.total_requests += 1
        rest, self._handoff = bytes(self._handoff), None
        if not self.transport.is_closing():
            self._hand_on(rest)

    def _hand_on(self, data: bytes) -> None:
        self._cancel_header_deadline()
        self._unset_keepalive_if_required()
        self.connections.discard(self)
        self.flow.resume_reading()  # the next read goes to h11: set below, before it
        protocol = DeadlineH11Protocol(
            config=self.config,
            server_state=self.server_state,
            app_state=self.app_state,
            _loop=self.loop,
        )
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        if data:
            protocol.data_received(data)


class SpellingCycle(RequestResponseCycle):
    """uvicorn's request-response cycle, writing the response's header names as the app
    spelled them (`x-amzn-ErrorType`), as h11 and API Gateway do: uvicorn's httptools
    protocol writes them in lowercase."""

    async def send(self, message: Any) -> None:
        if self.response_started or message["type"] != "http.response.start":
            await super().send(message)
            return
        names = [name for name, _ in message.get("headers", [])]
        transport = self.transport
        self.transport = _Respelling(transport, len(self.default_headers), names)  # type: ignore[assignment]
        try:
            await super().send(message)  # writes the head, every header on a line, in order
        finally:
            self.transport = transport


class _Respelling:
    """The transport, for the write of a response's head: the header lines after uvicorn's
    `skip` own (Date, Server) get back the names the app wrote."""

    def __init__(self, transport: asyncio.Transport, skip: int, names: list[bytes]) -> None:
        self._transport = transport
        self._first = 1 + skip  # after the status line
        self._names = names

    def write(self, data: bytes) -> None:
        lines = data.split(b"\r\n")  # values cannot hold CR or LF: uvicorn refuses them
        for offset, name in enumerate(self._names):
            line = lines[self._first + offset]
            lines[self._first + offset] = name + line[len(name) :]
        self._transport.write(b"\r\n".join(lines))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Ends:
    """Counts the requests a scratch parser read to their end."""

    def __init__(self) -> None:
        self.count = 0

    def on_message_complete(self) -> None:
        self.count += 1


def _ends_within(data: bytes) -> int:
    ends = _Ends()
    parser = httptools.HttpRequestParser(ends)
    parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn's
    with contextlib.suppress(httptools.HttpParserError, httptools.HttpParserUpgrade):
        parser.feed_data(data)
    return ends.count


def _start_of_request(data: bytes, before: int) -> int:
    """Where the request after the first `before` requests of `data` starts: the
    shortest prefix holding `before` whole requests (only on the path of a bad request
    pipelined behind others in one read: a bisection of parses in C)."""
    low, high = 0, len(data)
    while low < high:
        middle = (low + high) // 2
        if _ends_within(data[:middle]) >= before:
            high = middle
        else:
            low = middle + 1
    return low
