"""Where the benchmark reads an order's statuses from: its own WebSocket, or a shared one.

- `own_socket`: one connection per order, as a browser tab following one order does
  ($connect, subscribe, $disconnect for every order);
- `SharedSockets`: a few long-lived connections, each subscribed to many orders, as a
  trading client would hold them; messages are routed to their order by `orderId`.

Both yield (received_at, message) for one order, the snapshot first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

Received = tuple[float, dict[str, Any]]


async def own_socket(ws_url: str, order_id: str) -> AsyncGenerator[Received, None]:
    """A connection of the order's own: connect bare, subscribe, read."""
    async with websockets.connect(ws_url, open_timeout=30, max_queue=None) as socket:
        await socket.send(json.dumps({"action": "subscribe", "orderId": order_id}))
        async for raw in socket:
            yield time.time(), json.loads(raw)


class SocketClosed(Exception):
    """The shared connection carrying an order closed before the order ended."""


class SharedSockets:
    """`count` connections opened on first use; orders are spread over them in turn."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._sockets: list[ClientConnection] = []
        self._readers: list[asyncio.Task[None]] = []
        self._turn = itertools.count()
        self._queues: dict[str, asyncio.Queue[Received | None]] = {}
        self._orders_on: list[set[str]] = []  # per socket, the orders it carries
        self._opening = asyncio.Lock()

    async def follow(self, ws_url: str, order_id: str) -> AsyncGenerator[Received, None]:
        await self._open(ws_url)
        queue: asyncio.Queue[Received | None] = asyncio.Queue()
        self._queues[order_id] = queue  # before subscribing: the snapshot comes at once
        index = next(self._turn) % len(self._sockets)
        self._orders_on[index].add(order_id)
        try:
            await self._sockets[index].send(
                json.dumps({"action": "subscribe", "orderId": order_id})
            )
            while (item := await queue.get()) is not None:
                yield item
            raise SocketClosed("the shared WebSocket closed")
        finally:
            self._queues.pop(order_id, None)
            self._orders_on[index].discard(order_id)

    async def close(self) -> None:
        for socket in self._sockets:
            await socket.close()
        for reader in self._readers:
            reader.cancel()

    async def _open(self, ws_url: str) -> None:
        async with self._opening:
            while len(self._sockets) < self._count:
                socket = await websockets.connect(ws_url, open_timeout=30, max_queue=None)
                self._sockets.append(socket)
                self._orders_on.append(set())
                index = len(self._sockets) - 1
                self._readers.append(asyncio.create_task(self._read(socket, index)))

    async def _read(self, socket: ClientConnection, index: int) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in socket:
                received = time.time()
                message = json.loads(raw)
                queue = self._queues.get(str(message.get("orderId")))
                if queue is not None:  # else: a late duplicate of an order already ended
                    queue.put_nowait((received, message))
        for order_id in list(self._orders_on[index]):  # their followers stop waiting
            if (queue := self._queues.get(order_id)) is not None:
                queue.put_nowait(None)
