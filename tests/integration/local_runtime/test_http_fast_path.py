"""The gateways' HTTP protocol (httptools, handing what it does not read alike to h11)
answers every request byte for byte as h11 alone does: the same request reaches the
app, or the same refusal reaches the client. Each case is sent on a raw socket to two
servers of the same app, one of each protocol."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from local_runtime.asgi import Receive, Scope, Send
from local_runtime.http_fast_path import ApiGatewayHttpToolsProtocol
from local_runtime.processes import free_port
from local_runtime.server_protocols import DeadlineH11Protocol
from local_runtime.servers import AsgiServers

HOST = b"Host: 127.0.0.1\r\n"
CLOSE = b"Connection: close\r\n"


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with what it was given: method, target, version, headers and body."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen: dict[str, Any] = {
        key: scope[key] for key in ("method", "path", "http_version", "root_path")
    }
    seen["raw_path"] = scope["raw_path"].decode("latin-1")
    seen["query_string"] = scope["query_string"].decode("latin-1")
    seen["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    seen["body"] = body.decode("latin-1")
    answer = json.dumps(seen).encode()
    headers = [(b"Content-Type", b"application/json"), (b"x-amzn-RequestId", b"r-1")]
    if scope["method"] != "GET":  # the other answers are sent chunked
        headers.append((b"content-length", str(len(answer)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    """(fast path, h11 alone): the same app, the runtime's options, either protocol."""
    servers = AsgiServers()
    fast, h11_only = free_port(), free_port()
    servers.add("fast", echo, "127.0.0.1", fast)
    servers.add("h11", echo, "127.0.0.1", h11_only)
    assert servers._configs[0][1].http is ApiGatewayHttpToolsProtocol
    servers._configs[1][1].http = DeadlineH11Protocol
    servers.start()
    try:
        yield fast, h11_only
    finally:
        servers.stop()


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
# How a body is framed (chunked or not) is the protocols' own choice; clients read the
# same body either way. The protocols spell the Connection header they add each their way.
FRAMING = (b"date", b"content-length", b"transfer-encoding")


def answers(received: bytes) -> list[Answer]:
    """The answers in what a server sent: status, headers (sorted, but Date and framing)
    and body."""
    found: list[Answer] = []
    while received:
        head, _, received = received.partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        fields = [tuple(part.strip() for part in line.split(b":", 1)) for line in lines]
        headers = sorted(fields)
        framing = {name.lower(): value for name, value in headers if name.lower() in FRAMING}
        length = framing.get(b"content-length")
        status = int(status_line.split(b" ")[1])
        if status < 200:  # 100 Continue: the answer itself follows
            body = b""
        elif framing.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size, _, received = received.partition(b"\r\n")
                body, received = body + received[: int(size, 16)], received[int(size, 16) + 2 :]
                if int(size, 16) == 0:
                    break
        elif length is not None:  # less than that after a HEAD
            body, received = received[: int(length)], received[int(length) :]
        else:
            body, received = received, b""
        kept = [(n.lower() if n.lower() == b"connection" else n, v) for n, v in headers]
        found.append((status, sorted(h for h in kept if h[0].lower() not in FRAMING), body))
    return found


def exchange(port: int, parts: tuple[bytes, ...]) -> list[Answer]:
    """Every answer the server sends back to `parts` (sent apart, a moment between
    them), until it closes or is quiet for a while."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for index, part in enumerate(parts):
            if index:
                time.sleep(0.15)
            sock.sendall(part)
        sock.settimeout(0.6)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return answers(received)


def request(head: bytes, body: bytes = b"") -> bytes:
    return head + b"\r\n" + body


GOOD = request(b"GET /health?x=1 HTTP/1.1\r\n" + HOST + CLOSE)
POST = request(
    b"POST /api/orders/execute HTTP/1.1\r\n" + HOST + CLOSE + b"Content-Length: 7\r\n",
    b'{"a":1}',
)
KEEP_ALIVE = request(b"GET /one HTTP/1.1\r\n" + HOST)
BIG = b"k" * 20_000

CASES: dict[str, tuple[bytes, ...]] = {
    "a plain GET": (GOOD,),
    "a POST with a body": (POST,),
    "a chunked POST": (
        request(
            b"POST /x HTTP/1.1\r\n" + HOST + CLOSE + b"Transfer-Encoding: chunked\r\n",
            b"3\r\nabc\r\n0\r\n\r\n",
        ),
    ),
    "a broken chunk": (
        request(
            b"POST /x HTTP/1.1\r\n" + HOST + CLOSE + b"Transfer-Encoding: chunked\r\n",
            b"zz\r\nabc\r\n0\r\n\r\n",
        ),
    ),
    "a HEAD": (request(b"HEAD /health HTTP/1.1\r\n" + HOST + CLOSE),),
    "percent escapes": (request(b"GET /a%20b/%2e%2e/%00?q=%41&r HTTP/1.1\r\n" + HOST + CLOSE),),
    "an 8 KB path": (request(b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\n" + HOST + CLOSE),),
    "an unknown method": (request(b"FOO /api/orders/execute HTTP/1.1\r\n" + HOST + CLOSE),),
    "a lowercase method": (request(b"get /health HTTP/1.1\r\n" + HOST + CLOSE),),
    "a WebDAV method": (request(b"PROPFIND /health HTTP/1.1\r\n" + HOST + CLOSE),),
    "HTTP/1.0 without Host": (request(b"GET /health HTTP/1.0\r\n"),),
    "HTTP/1.0 with Host": (request(b"GET /health HTTP/1.0\r\n" + HOST),),
    "HTTP/1.1 without Host": (request(b"GET /health HTTP/1.1\r\n" + CLOSE),),
    "two Hosts": (request(b"GET /health HTTP/1.1\r\n" + HOST + HOST + CLOSE),),
    "HTTP/2.0 as text": (request(b"GET /health HTTP/2.0\r\n" + HOST + CLOSE),),
    "HTTP/1.2": (request(b"GET /health HTTP/1.2\r\n" + HOST + CLOSE),),
    "a fragment": (request(b"GET /health#top HTTP/1.1\r\n" + HOST + CLOSE),),
    "an absolute target": (request(b"GET http://evil.example/health HTTP/1.1\r\n" + HOST + CLOSE),),
    "an asterisk target": (request(b"OPTIONS * HTTP/1.1\r\n" + HOST + CLOSE),),
    "bytes that are not ASCII in the target": (
        request(b"GET /api/orders/\xff\xfe HTTP/1.1\r\n" + HOST + CLOSE),
    ),
    "a NUL in the target": (request(b"GET /a\x00 HTTP/1.1\r\n" + HOST + CLOSE),),
    "a space in the target": (request(b"GET /a b HTTP/1.1\r\n" + HOST + CLOSE),),
    "a tab in the target": (request(b"GET /a\tb HTTP/1.1\r\n" + HOST + CLOSE),),
    **{
        f"a header value with {name}": (
            request(b"GET /health HTTP/1.1\r\n" + HOST + CLOSE + b"X-Key: a" + byte + b"b\r\n"),
        )
        for name, byte in (
            ("SOH", b"\x01"),
            ("ESC", b"\x1b"),
            ("DEL", b"\x7f"),
            ("a C1 control", b"\x85"),
            ("a latin-1 letter", b"\xe9"),
            ("NUL", b"\x00"),
            ("a bare CR", b"\r"),
            ("a bare LF", b"\n"),
            ("VT", b"\x0b"),
            ("a tab", b"\t"),
        )
    },
    "a header value with spaces around": (
        request(b"GET /health HTTP/1.1\r\n" + HOST + CLOSE + b"X-Key:   a b  \t\r\n"),
    ),
    "an empty header value": (request(b"GET /health HTTP/1.1\r\n" + HOST + CLOSE + b"X-Key:\r\n"),),
    "a space before the colon": (
        request(b"GET /health HTTP/1.1\r\n" + HOST + CLOSE + b"X-Key : a\r\n"),
    ),
    "an empty header name": (request(b"GET /health HTTP/1.1\r\n" + HOST + CLOSE + b": a\r\n"),),
    "a folded header": (
        request(b"GET /health HTTP/1.1\r\n" + HOST + CLOSE + b"X-Key: a\r\n b\r\n"),
    ),
    "lines ended by LF alone": (b"GET /health HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n\n",),
    "blank lines before the request": (b"\r\n\r\n" + GOOD,),
    "Transfer-Encoding gzip, chunked": (
        request(
            b"POST /x HTTP/1.1\r\n" + HOST + CLOSE + b"Transfer-Encoding: gzip, chunked\r\n",
            b"3\r\nabc\r\n0\r\n\r\n",
        ),
    ),
    "Transfer-Encoding gzip": (
        request(b"POST /x HTTP/1.1\r\n" + HOST + CLOSE + b"Transfer-Encoding: gzip\r\n", b"abc"),
    ),
    "Content-Length and Transfer-Encoding": (
        request(
            b"POST /x HTTP/1.1\r\n"
            + HOST
            + CLOSE
            + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            b"3\r\nabc\r\n0\r\n\r\n",
        ),
    ),
    "two equal Content-Lengths": (
        request(
            b"POST /x HTTP/1.1\r\n" + HOST + CLOSE + b"Content-Length: 3\r\nContent-Length: 3\r\n",
            b"abc",
        ),
    ),
    "two different Content-Lengths": (
        request(
            b"POST /x HTTP/1.1\r\n" + HOST + CLOSE + b"Content-Length: 3\r\nContent-Length: 4\r\n",
            b"abcd",
        ),
    ),
    "a Content-Length of letters": (
        request(b"POST /x HTTP/1.1\r\n" + HOST + CLOSE + b"Content-Length: abc\r\n", b"abc"),
    ),
    "an upgrade to h2c": (
        request(
            b"POST /x HTTP/1.1\r\n"
            + HOST
            + b"Connection: upgrade, close\r\nUpgrade: h2c\r\nContent-Length: 3\r\n",
            b"abc",
        ),
    ),
    "Expect: 100-continue": (
        request(
            b"POST /x HTTP/1.1\r\n"
            + HOST
            + CLOSE
            + b"Expect: 100-continue\r\nContent-Length: 3\r\n"
        ),
        b"abc",
    ),
    "a 20 KB header in one read": (
        request(b"GET /health HTTP/1.1\r\n" + HOST + CLOSE + b"X-Key: " + BIG + b"\r\n"),
    ),
    "a 20 KB header over two reads": (
        b"GET /health HTTP/1.1\r\n" + HOST + CLOSE + b"X-Key: " + BIG,
        b"\r\n\r\n",
    ),
    "a head over two reads, a control character in the second": (
        b"GET /health HTTP/1.1\r\n" + HOST,
        CLOSE + b"X-Key: a\x01b\r\n\r\n",
    ),
    "two requests on a kept-alive connection": (KEEP_ALIVE, GOOD),
    "an unknown method after a request, on a kept-alive connection": (
        KEEP_ALIVE,
        request(b"FOO /two HTTP/1.1\r\n" + HOST + CLOSE),
    ),
    "two requests in one read": (KEEP_ALIVE + GOOD,),
    "an unknown method pipelined behind a POST in one read": (
        request(b"POST /one HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\n", b"abc")
        + request(b"FOO /two HTTP/1.1\r\n" + HOST + CLOSE),
    ),
    "a control character pipelined behind two requests in one read": (
        KEEP_ALIVE + KEEP_ALIVE + request(b"GET /three HTTP/1.1\r\n" + HOST + b"X: \x01\r\n"),
    ),
}


@pytest.mark.parametrize("parts", list(CASES.values()), ids=list(CASES))
def test_every_request_is_answered_as_h11_alone_answers_it(
    ports: tuple[int, int], parts: tuple[bytes, ...]
) -> None:
    fast, h11_only = ports
    expected = exchange(h11_only, parts)
    assert expected  # h11 answered something: the case is a case
    assert exchange(fast, parts) == expected


def test_an_http_1_0_answer_is_never_chunked(ports: tuple[int, int]) -> None:
    """An HTTP/1.0 client cannot read chunked framing: a body of unknown length ends
    with the connection, as h11 sends it."""
    fast, _ = ports
    with socket.create_connection(("127.0.0.1", fast), timeout=5) as sock:
        sock.sendall(request(b"GET /health HTTP/1.0\r\n" + HOST))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower()
    assert json.loads(body)["http_version"] == "1.0"


def test_plain_requests_are_read_by_httptools(ports: tuple[int, int]) -> None:
    """The fast path is taken: uvicorn's httptools protocol writes its headers in
    lowercase, where h11 gives Transfer-Encoding its usual spelling."""
    fast, h11_only = ports
    for port, spelling in ((fast, b"transfer-encoding"), (h11_only, b"Transfer-Encoding")):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(GOOD)
            assert spelling + b": chunked" in sock.recv(65536)
