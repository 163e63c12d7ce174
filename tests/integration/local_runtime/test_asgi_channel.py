"""A sandbox's @connections calls over the runtime's Unix socket (asgi_channel.py): what
goes over the socket and what still goes over HTTP. (Every answer of the @connections
API, over both, is in test_local_websocket_api.py.)

The client's endpoint is a port where nothing listens, so a call that went over HTTP
fails with EndpointConnectionError.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from local_runtime.asgi import Receive, Scope, Send
from local_runtime.asgi_channel import SERVICE_EVENT, ChannelSender, serve_channel
from local_runtime.management_api import handle_management
from local_runtime.processes import free_port


class FakeConnection:
    """What the @connections API needs of a connection: it records what it is sent."""

    def __init__(self) -> None:
        self.sent: list[str | bytes] = []
        self.closed = False

    async def send_data(self, data: str | bytes) -> bool:
        self.sent.append(data)
        return True


class Gateway:
    def __init__(self) -> None:
        self.connections: dict[str, Any] = {"alive=": FakeConnection()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await handle_management(scope, receive, send, self.connections)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Gateway, str]]:
    gateway, path = Gateway(), str(tmp_path / "ws.sock")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(serve_channel(gateway, path), loop).result(5)
    yield gateway, path
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def client(origin: str, channels: dict[str, str]) -> Any:
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    session._session.register(SERVICE_EVENT, ChannelSender(channels))
    return session.client(
        "apigatewaymanagementapi",
        endpoint_url=f"{origin}/dev",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=3),
    )


@pytest.fixture
def origin() -> str:
    return f"http://127.0.0.1:{free_port('127.0.0.1')}"  # nothing listens there


def test_a_post_reaches_the_connection_over_the_channel(
    served: tuple[Gateway, str], origin: str
) -> None:
    gateway, path = served
    api = client(origin, {origin: path})
    for n in range(3):  # one kept-open socket answers one call after another
        api.post_to_connection(ConnectionId="alive=", Data=f"event {n}".encode())
    assert gateway.connections["alive="].sent == ["event 0", "event 1", "event 2"]


def test_other_origins_and_an_unserved_socket_go_over_http(
    served: tuple[Gateway, str], origin: str, tmp_path: Path
) -> None:
    _, path = served
    elsewhere = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    for api in (
        client(elsewhere, {origin: path}),  # not a local gateway's origin
        client(origin, {origin: str(tmp_path / "nobody.sock")}),  # no channel served
    ):
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            api.post_to_connection(ConnectionId="alive=", Data=b"x")
