"""Open WebSocket connections, shared by the WebSocket gateway and the @connections API.

All methods run on the gateway's event loop. A connection closes once: the first of
client close, server close (idle timeout, DELETE, shutdown, oversized message) records
the code and reason that its $disconnect event will carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from local_runtime.asgi import Send
from local_runtime.websocket_events import WsClient


def iso8601(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Connection:
    def __init__(self, client: WsClient, send: Send) -> None:
        self.client = client
        self._send = send
        self._send_lock = asyncio.Lock()
        self.last_active = time.time()
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.closed = False
        self.close_code = 1005
        self.close_reason = ""

    @property
    def id(self) -> str:
        return self.client.connection_id

    def touch(self) -> None:
        self.last_active = time.time()

    def mark_closed(self, code: int, reason: str) -> bool:
        """Record how the connection ended; False if it had already ended."""
        if self.closed:
            return False
        self.closed, self.close_code, self.close_reason = True, code, reason
        return True

    async def send_data(self, data: str | bytes) -> bool:
        """Send one message; False if the connection is (or just became) gone."""
        if self.closed:
            return False
        message: dict[str, Any] = {"type": "websocket.send"}
        message["text" if isinstance(data, str) else "bytes"] = data
        try:
            async with self._send_lock:
                await self._send(message)
        except Exception:  # the client vanished between the check and the send
            return False
        self.touch()
        return True

    async def close(self, code: int, reason: str = "") -> bool:
        """Server-side close; False if it was already closed."""
        if not self.mark_closed(code, reason):
            return False
        with contextlib.suppress(Exception):
            async with self._send_lock:
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
        return True

    def info(self) -> dict[str, Any]:
        """The GetConnection answer of the @connections API."""
        return {
            "connectedAt": iso8601(self.client.connected_at_ms / 1000),
            "identity": {
                "sourceIp": self.client.source_ip,
                "userAgent": self.client.user_agent or "",
            },
            "lastActiveAt": iso8601(self.last_active),
        }
