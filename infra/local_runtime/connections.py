"""Open WebSocket connections, shared by the WebSocket gateway and the @connections API.

All methods run on the gateway's event loop. A connection closes once: the first of
client close, server close (idle timeout, DELETE, shutdown, oversized message, a client
that does not read) records the code and reason that its $disconnect event will carry.

A send waits at most `SEND_TIMEOUT` seconds for the socket to take the data. A client
that leaves that much unread (its socket buffer full) cannot keep up: the connection is
dropped with `SLOW_CLIENT` and everything else for it is refused (GoneException to
@connections), so one client that never reads cannot hold up whoever is sending to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from local_runtime.asgi import Send
from local_runtime.websocket_events import WsClient

log = logging.getLogger(__name__)

SEND_TIMEOUT = 2.0
# 1008 (policy violation): the client broke the rule that it must read what it is sent.
SLOW_CLIENT = 1008
SLOW_CLIENT_REASON = "Client does not read its messages"
Abort = Callable[[int, str], None]


def iso8601(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Connection:
    def __init__(self, client: WsClient, send: Send, abort: Abort | None = None) -> None:
        self.client = client
        self._send = send
        self._abort = abort
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
            async with asyncio.timeout(SEND_TIMEOUT):
                async with self._send_lock:
                    if self.closed:
                        return False
                    await self._send(message)
        except TimeoutError:
            self.drop(SLOW_CLIENT, SLOW_CLIENT_REASON)
            return False
        except Exception:  # the client vanished between the check and the send
            return False
        self.touch()
        return True

    async def close(self, code: int, reason: str = "") -> bool:
        """Server-side close; False if it was already closed."""
        if not self.mark_closed(code, reason):
            return False
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                async with self._send_lock:
                    await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except TimeoutError:  # a full socket buffer: the close frame cannot go out
            self._abort_transport(code, reason)
        except Exception as error:  # already gone
            log.debug("closing connection %s: %r", self.id, error)
        return True

    def drop(self, code: int, reason: str) -> None:
        """Close at once, without waiting for the socket (which may never drain)."""
        if self.mark_closed(code, reason):
            self._abort_transport(code, reason)

    def _abort_transport(self, code: int, reason: str) -> None:
        if self._abort is not None:
            with contextlib.suppress(Exception):
                self._abort(code, reason)

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
