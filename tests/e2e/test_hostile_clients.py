"""Hostile or careless clients over real sockets: one account's sockets that never read
must not slow another account down, and a revoked key's socket gets nothing more.

Issue 17, points 1 and 3 (the engine's side: the notifier holds no transaction or lock
while it posts, and a subscription is written only for a connection under a live key).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import psycopg
import websockets
from botocore.config import Config

from local_runtime.runtime import LocalRuntime
from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts
from order_engine.database import Database
from order_engine_cli.client import ApiError, OrderClient, follow
from tests.support.stack import ORDER, new_api_key

STUCK_SOCKETS = 5
ORDERS_PER_STUCK_SOCKET = 10
SAMPLES = 8


# --- sockets that never read ----------------------------------------------------------


def _masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    if length < 126:
        header = bytes([0x81, 0x80 | length])
    else:
        header = bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    return header + mask + masked


def _non_reading_socket(url: str) -> socket.socket:
    """A WebSocket opened by hand with a 4 KB receive window, never read after its 101."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
    sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
    sock.settimeout(10)
    key = base64.b64encode(os.urandom(16)).decode()
    target = f"{parts.path or '/'}?{parts.query}"
    sock.sendall(
        (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)  # byte by byte: nothing past the 101 is read
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


def _fill(runtime: LocalRuntime, connection_id: str) -> None:
    """Post to the connection until its buffers are full (the post stalls) or the
    gateway drops it: several MB nobody reads."""
    api = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=runtime.management_url(),
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(read_timeout=3, retries={"total_max_attempts": 1}),
    )
    for _ in range(200):  # 20 MB at most: far more than any socket buffer
        try:
            api.post_to_connection(ConnectionId=connection_id, Data=b"x" * 100_000)
        except Exception:  # stalled (a read timeout) or dropped (GoneException)
            return
    raise AssertionError(f"{connection_id} took 20 MB without stalling")


@contextmanager
def stuck_sockets(runtime: LocalRuntime, api_key: str, count: int) -> Iterator[list[socket.socket]]:
    (gateway,) = runtime.websocket_gateways
    opened: list[socket.socket] = []
    try:
        ids = []
        for _ in range(count):
            before = set(gateway.connections)
            opened.append(_non_reading_socket(f"{runtime.ws_url()}?apiKey={quote(api_key)}"))
            deadline = time.monotonic() + 10
            while not (new := set(gateway.connections) - before):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            ids += list(new)
        fillers = [threading.Thread(target=_fill, args=(runtime, c)) for c in ids]
        for filler in fillers:
            filler.start()
        for filler in fillers:
            filler.join(60)
        yield opened
    finally:
        for sock in opened:
            sock.close()


def _subscribe(sock: socket.socket, order_id: str) -> None:
    frame = _masked_text_frame(json.dumps({"action": "subscribe", "orderId": order_id}))
    # The gateway may have closed it for not reading: a hostile client goes on anyway.
    with contextlib.suppress(OSError):
        sock.sendall(frame)


# --- measuring the other account --------------------------------------------------------


def _time_to_confirmed(client: OrderClient) -> tuple[int, float]:
    """POST an order and follow it to its end; (POST status, seconds to the end)."""
    started = time.monotonic()
    status, body = client.request("POST", "/api/orders/execute", ORDER)
    if status != 202:
        return status, time.monotonic() - started

    async def until_final() -> None:
        async for event in follow(body["wsUrl"], api_key=client.api_key):
            if event["status"] in ("confirmed", "failed"):
                return

    asyncio.run(asyncio.wait_for(until_final(), 60))
    return status, time.monotonic() - started


def _measure(client: OrderClient, samples: int) -> tuple[list[int], list[float]]:
    statuses, seconds = [], []
    for _ in range(samples):
        status, took = _time_to_confirmed(client)
        statuses.append(status)
        seconds.append(took)
    return statuses, sorted(seconds)


def _p99(sorted_seconds: list[float]) -> float:
    return sorted_seconds[min(len(sorted_seconds) - 1, int(0.99 * len(sorted_seconds)))]


class IdleInTransactionWatch:
    """Polls pg_stat_activity; remembers the longest any session sat idle in a transaction."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._stop = threading.Event()
        self.longest = 0.0
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._stop.is_set():
                row = conn.execute(
                    "SELECT coalesce(max(extract(epoch FROM now() - state_change)), 0)"
                    " FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"
                    " AND datname = current_database()"
                ).fetchone()
                self.longest = max(self.longest, float(row[0]) if row else 0.0)
                time.sleep(0.1)

    def __enter__(self) -> IdleInTransactionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_one_accounts_non_reading_sockets_do_not_slow_another_account(
    runtime: LocalRuntime, migrated_url: str, fresh_api_key: str
) -> None:
    """Five sockets of one account, never read, their buffers filled, subscribed to ten
    of its orders each, while it keeps placing orders and subscribing them: the other
    account's POSTs answer no 5xx, its p99 to a final status stays within 1 s of its
    baseline, and no PostgreSQL session sits idle in a transaction for over 1 s.

    The p99 bound needs the local runtime's @connections send timeout (a post to a
    socket that does not read answers GoneException after 2 s, and the socket is
    closed). Without it, the first posts to each stuck socket each hold a notifier
    invocation for the notifier's whole read timeout (3 s): the engine holds nothing
    of the database meanwhile, but the other account's next notification may wait for
    a free invocation once."""
    hostile = OrderClient(runtime.http_url, api_key=_new_key(migrated_url, "hostile"))
    victim = OrderClient(runtime.http_url, api_key=fresh_api_key)
    baseline_statuses, baseline = _measure(victim, SAMPLES)
    assert set(baseline_statuses) == {202}

    with (
        IdleInTransactionWatch(migrated_url) as watch,
        stuck_sockets(runtime, hostile.api_key or "", STUCK_SOCKETS) as sockets,
    ):
        stop = threading.Event()

        def keep_subscribing() -> None:
            """The hostile account keeps placing orders and following each from a
            socket that does not read."""
            turn = 0
            while not stop.is_set():
                follow_one(turn)
                turn += 1
                time.sleep(0.1)

        def follow_one(turn: int) -> None:
            try:
                order_id = hostile.place(ORDER)["orderId"]
            except ApiError:  # its own rate limit, or a stack in trouble: go on
                time.sleep(0.5)
                return
            _subscribe(sockets[turn % len(sockets)], order_id)

        for turn in range(STUCK_SOCKETS * ORDERS_PER_STUCK_SOCKET):
            follow_one(turn)
        load = threading.Thread(target=keep_subscribing, daemon=True)
        load.start()
        try:
            statuses, during = _measure(victim, SAMPLES)
        finally:
            stop.set()
            load.join(30)

    print(
        f"baseline p99 {_p99(baseline):.2f} s, with stuck sockets p99 {_p99(during):.2f} s;"
        f" longest idle in transaction {watch.longest:.2f} s"
    )
    assert not [status for status in statuses if status >= 500], statuses
    assert set(statuses) == {202}
    assert _p99(during) <= _p99(baseline) + 1.0, (baseline, during)
    assert watch.longest <= 1.0


# --- a revoke racing a handshake ----------------------------------------------------------


def _new_key(url: str, name: str) -> str:
    return new_api_key(url, f"{name}-{os.urandom(4).hex()}")


def test_a_socket_whose_key_is_revoked_right_after_its_handshake_gets_nothing(
    runtime: LocalRuntime, migrated_url: str
) -> None:
    """The handshake's subscription is written by a delayed message, a second after
    $connect; the revoke comes in between. That message must not subscribe a socket
    whose key is gone: it receives nothing, neither the snapshot nor any status."""
    key = _new_key(migrated_url, "revoked-soon")
    client = OrderClient(runtime.http_url, api_key=key)
    placed = client.place(ORDER)

    async def handshake_then_listen() -> list[Any]:
        received: list[Any] = []
        url = f"{placed['wsUrl']}&apiKey={quote(key)}"
        async with websockets.connect(url) as sock:
            with Database(migrated_url, max_size=1) as database:
                Accounts(AccountStore(database)).revoke_key(key)
            try:
                while True:
                    received.append(json.loads(await asyncio.wait_for(sock.recv(), 6)))
            except (TimeoutError, websockets.ConnectionClosed):
                return received

    received = asyncio.run(handshake_then_listen())

    assert received == []
