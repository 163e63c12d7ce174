"""A client of the public HTTP and WebSocket APIs, as any user would write one.

Used by `order-engine demo`, the benchmark and the end-to-end tests, so all three
exercise exactly what users see: JSON over HTTP, and the snapshot-then-events stream
whose `seq` lets a client drop duplicates. Both present an API key as
`Authorization: Bearer <key>` (a WebSocket client that cannot set headers, such as a
browser, adds `apiKey=<key>` to the URL instead).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import websockets

from order_engine.orders import TERMINAL as TERMINAL_STATUSES

TERMINAL = frozenset(status.value for status in TERMINAL_STATUSES)


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def authorization(api_key: str | None) -> dict[str, str]:
    return {} if api_key is None else {"Authorization": f"Bearer {api_key}"}


@dataclass
class OrderClient:
    api_url: str  # e.g. http://127.0.0.1:3000
    timeout: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict)
    api_key: str | None = field(default=None, repr=False)

    def request(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """One HTTP exchange; returns (status, parsed JSON body) without raising on 4xx/5xx."""
        data = (
            None
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        all_headers = {
            "Content-Type": "application/json",
            **authorization(self.api_key),
            **self.headers,
            **(headers or {}),
        }
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __post_init__)
            self.api_url.rstrip("/") + path, data=data, method=method, headers=all_headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, _json(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _json(error.read())

    def place(
        self, order: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """POST an order; returns {"orderId", "status", "wsUrl"}."""
        key = idempotency_key or str(uuid.uuid4())
        status, body = self.request(
            "POST", "/api/orders/execute", order, headers={"Idempotency-Key": key}
        )
        if status != 202:
            raise ApiError(status, body)
        return dict(body)

    def get(self, order_id: str) -> dict[str, Any]:
        status, body = self.request("GET", f"/api/orders/{order_id}")
        if status != 200:
            raise ApiError(status, body)
        return dict(body)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


@dataclass
class StatusStream:
    """Turns the socket's snapshot and event messages into one ordered, duplicate-free
    sequence of events per order, and remembers anything out of order."""

    last_seq: dict[str, int] = field(default_factory=dict)
    out_of_order: list[tuple[str, int, int]] = field(default_factory=list)

    def accept(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = message.get("type")
        if kind == "snapshot":
            events = list(message.get("events", []))
        elif kind == "event":
            events = [dict(message)]
        else:
            return []
        fresh = []
        for event in events:
            order_id, seq = event["orderId"], int(event["seq"])
            last = self.last_seq.get(order_id, 0)
            if seq <= last:
                continue  # a duplicate: the same seq was delivered before
            if seq != last + 1:
                self.out_of_order.append((order_id, last, seq))
            self.last_seq[order_id] = seq
            fresh.append(event)
        return fresh


async def follow(
    ws_url: str,
    *,
    api_key: str | None = None,
    subscribe: str | None = None,
    open_timeout: float = 10.0,
) -> AsyncIterator[dict[str, Any]]:
    """Yield each event of an order until it is terminal: the order `ws_url` subscribes
    to in the handshake (`?orderId=`), or the one named by `subscribe`, sent as a
    message once the socket is open. The message answers with the snapshot at once; a
    handshake subscription starts about a second later (see OrderService.connect)."""
    stream = StatusStream()
    async with websockets.connect(
        ws_url, additional_headers=authorization(api_key), open_timeout=open_timeout
    ) as socket:
        if subscribe is not None:
            await socket.send(json.dumps({"action": "subscribe", "orderId": subscribe}))
        async for raw in socket:
            for event in stream.accept(json.loads(raw)):
                yield event
                if event["status"] in TERMINAL:
                    return
