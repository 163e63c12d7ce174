"""Bad WebSocket handshakes: keys and order ids in the query are refused with a 4xx."""

from __future__ import annotations

import asyncio
import http.client
import socket
import uuid
from urllib.parse import quote, urlsplit

import pytest
import websockets

from local_runtime.runtime import LocalRuntime
from tests.support.bad_input import SEMI_VALID_KEY, Mallory, writes_nothing

HANDSHAKES = [
    ("no key", "", 401),
    ("an empty key", "?apiKey=", 401),
    ("a key of nobody", f"?apiKey={SEMI_VALID_KEY}", 401),
    ("a key of SQL", "?apiKey=" + quote("' OR '1'='1", safe=""), 401),
    ("a key with a NUL", "?apiKey=%00", 401),
    ("a key of invalid UTF-8", "?apiKey=%FF%FE", 401),
    ("a key of 8 KB", "?apiKey=" + "k" * 8000, 401),
    ("an order id not a uuid", "?apiKey={key}&orderId=not-a-uuid", 422),
    ("an order id of SQL", "?apiKey={key}&orderId=" + quote("1' OR '1'='1", safe=""), 422),
    ("an order id of traversal", "?apiKey={key}&orderId=..%2F..%2Fetc%2Fpasswd", 422),
    ("an order id with a NUL", "?apiKey={key}&orderId=%00", 422),
    ("an empty order id", "?apiKey={key}&orderId=", 422),
    ("an emoji order id", "?apiKey={key}&orderId=%F0%9F%9A%80", 422),
    ("an unknown order", "?apiKey={key}&orderId=" + str(uuid.uuid4()), 404),
]


@pytest.mark.parametrize(
    ("query", "status"), [h[1:] for h in HANDSHAKES], ids=[h[0] for h in HANDSHAKES]
)
def test_a_bad_handshake_is_refused_with_a_4xx(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory, query: str, status: int
) -> None:
    url = runtime.ws_url() + query.replace("{key}", mallory.key)

    async def connect() -> int:
        async with websockets.connect(url, open_timeout=10):
            return 101

    with writes_nothing(migrated_url, mallory):
        try:
            answered = asyncio.run(connect())
        except websockets.InvalidStatus as refused:
            answered = refused.response.status_code
    assert answered == status


def test_a_handshake_with_bytes_that_are_not_ascii_in_the_query_is_not_a_500(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory
) -> None:
    url = urlsplit(runtime.ws_url())
    assert url.port is not None
    port = url.port
    request = (
        b"GET "
        + url.path.encode()
        + b"?apiKey=\xff\xfe HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{port}\r\n".encode()
        + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with (
        writes_nothing(migrated_url, mallory),
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
    ):
        sock.sendall(request)
        response = http.client.HTTPResponse(sock, method="GET")
        response.begin()
    assert 400 <= response.status < 500
