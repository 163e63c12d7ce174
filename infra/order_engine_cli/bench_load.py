"""The benchmark's load: orders POSTed over HTTP and followed over WebSocket, as users do.

Each order is one task: POST /api/orders/execute with an Idempotency-Key, then a bare
WebSocket connection that sends {"action": "subscribe", "orderId": …} (the snapshot
comes at once; `?orderId=` in the URL would add a deliberate one-second delay, see
service.py), then every status until a terminal one. Orders arrive at a fixed rate
(open loop: arrivals do not wait for the system) or with a fixed number in flight
(closed loop), or at a rate with a cap on those in flight.

HTTP goes through a small pool of threads, each with one keep-alive connection
(http.client), so a thousand orders do not cost a thousand TCP handshakes; the sockets
live on the event loop.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import websockets

from order_engine_cli.bench_sockets import Received, SharedSockets, SocketClosed, own_socket
from order_engine_cli.bench_stats import ObservedEvent, OrderTrace, parse_at
from order_engine_cli.client import TERMINAL, StatusStream

ORDERS = (
    {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"},
    {"type": "market", "tokenIn": "USDC", "tokenOut": "SOL", "amount": "250"},
    {"type": "market", "tokenIn": "SOL", "tokenOut": "BONK", "amount": "0.4"},
    {"type": "market", "tokenIn": "JUP", "tokenOut": "USDC", "amount": "120"},
    {"type": "market", "tokenIn": "USDT", "tokenOut": "USDC", "amount": "500"},
)
# POSTs in flight at once, each on a keep-alive connection of its own. Many: a slow
# stack must show as slow answers, not as a client that cannot send fast enough (16
# capped a run at 16 / POST latency orders per second).
HTTP_THREADS = 64


@dataclass(frozen=True)
class LoadPlan:
    orders: int
    rate_per_minute: float | None  # None: closed loop, as fast as `concurrency` allows
    concurrency: int | None  # most orders in flight at once; None: no cap
    deadline: float  # seconds an accepted order may take to become terminal, else lost
    api_key: str | None = None
    sockets: int = 0  # WebSocket connections shared by all orders; 0: one per order


@dataclass
class Counters:
    """What the progress display shows."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    terminal: int = 0
    failed: int = 0
    lost: int = 0

    @property
    def in_flight(self) -> int:
        return self.accepted - self.terminal - self.lost


class KeepAliveHttp:
    """JSON over HTTP/1.1 with one persistent connection per worker thread."""

    def __init__(self, api_url: str, headers: dict[str, str], timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(api_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"--api must be an http:// URL, not {api_url!r}")
        self._host, self._port = parsed.hostname, parsed.port or 80
        self._prefix = parsed.path.rstrip("/")
        self._headers = {"Content-Type": "application/json", **headers}
        self._timeout = timeout
        self._local = threading.local()

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        all_headers = {**self._headers, **(headers or {})}
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request(method, self._prefix + path, data, all_headers)
                response = connection.getresponse()
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
            except (http.client.HTTPException, ConnectionError) as error:
                # A keep-alive connection the server closed meanwhile: retry once on a
                # new one (the Idempotency-Key makes a repeated POST harmless).
                self._local.connection = None
                connection.close()
                if attempt == 2:
                    raise ConnectionError(f"{method} {path}: {error}") from error
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.connection = connection
        return connection


class LoadDriver:
    def __init__(
        self,
        api_url: str,
        plan: LoadPlan,
        on_change: Callable[[Counters], None] = lambda _: None,
    ) -> None:
        self.plan = plan
        auth = {"Authorization": f"Bearer {plan.api_key}"} if plan.api_key else {}
        self.http = KeepAliveHttp(api_url, auth)
        self.counters = Counters()
        self.traces: list[OrderTrace] = []
        self._on_change = on_change
        self._pool = ThreadPoolExecutor(HTTP_THREADS, thread_name_prefix="bench-http")
        self._shared = SharedSockets(plan.sockets) if plan.sockets else None

    async def run(self) -> list[OrderTrace]:
        """Place every order of the plan and follow each to its end (or its deadline)."""
        slots = asyncio.Semaphore(self.plan.concurrency or self.plan.orders)
        tasks: list[asyncio.Task[None]] = []
        started = time.monotonic()
        interval = 60.0 / self.plan.rate_per_minute if self.plan.rate_per_minute else 0.0
        try:
            for index in range(self.plan.orders):
                if interval:
                    await asyncio.sleep(max(0.0, started + index * interval - time.monotonic()))
                await slots.acquire()
                trace = OrderTrace(sent_at=time.time())
                self.traces.append(trace)
                task = asyncio.create_task(self._one(index, trace))
                task.add_done_callback(lambda _: slots.release())
                tasks.append(task)
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            self._pool.shutdown(wait=False, cancel_futures=True)
            if self._shared is not None:
                await self._shared.close()
        return self.traces

    async def _one(self, index: int, trace: OrderTrace) -> None:
        self.counters.sent += 1
        try:
            status, body = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._place, ORDERS[index % len(ORDERS)]
            )
        except OSError as error:
            status, body = 0, str(error)
        if status != 202 or not isinstance(body, dict):
            trace.rejected = _rejection(status, body)
            self.counters.rejected += 1
            self._on_change(self.counters)
            return
        trace.order_id, trace.accepted_at = str(body["orderId"]), time.time()
        self.counters.accepted += 1
        self._on_change(self.counters)
        deadline = trace.sent_at + self.plan.deadline
        try:
            ws_url = _bare_ws_url(body.get("wsUrl"), self.plan.api_key)
            await asyncio.wait_for(self._follow(trace, ws_url), max(0.1, deadline - time.time()))
        except TimeoutError:
            pass
        except (OSError, ValueError, SocketClosed, websockets.WebSocketException) as error:
            # Accepted but not followed to its end: counted as lost, with this reason.
            trace.follow_error = f"websocket: {type(error).__name__}: {str(error)[:80]}"
        if trace.terminal_at is None:
            self.counters.lost += 1
        else:
            self.counters.terminal += 1
            self.counters.failed += trace.status == "failed"
        self._on_change(self.counters)

    def _place(self, order: dict[str, Any]) -> tuple[int, Any]:
        return self.http.request(
            "POST", "/api/orders/execute", order, headers={"Idempotency-Key": str(uuid.uuid4())}
        )

    async def _follow(self, trace: OrderTrace, ws_url: str) -> None:
        assert trace.order_id is not None
        messages: AsyncGenerator[Received, None]
        if self._shared is not None:
            messages = self._shared.follow(ws_url, trace.order_id)
        else:
            messages = own_socket(ws_url, trace.order_id)
        stream = StatusStream()
        try:
            async for received, message in messages:
                jumps = len(stream.out_of_order)
                for event in stream.accept(message):
                    trace.events.append(
                        ObservedEvent(
                            seq=int(event["seq"]),
                            status=str(event["status"]),
                            at=parse_at(str(event["at"])),
                            received_at=received,
                            live=message.get("type") == "event",
                        )
                    )
                    if event["status"] == "failed":
                        trace.failure_reason = str((event.get("data") or {}).get("reason"))
                trace.seq_jumps += [(last, seq) for _, last, seq in stream.out_of_order[jumps:]]
                if trace.status in TERMINAL:
                    return
        finally:
            await messages.aclose()  # closes the order's own socket, if it has one

    def server_status(self, order_id: str) -> str:
        """What GET /api/orders/{id} says now (for orders the client lost track of)."""
        try:
            status, body = self.http.request("GET", f"/api/orders/{order_id}")
        except OSError as error:
            return f"unknown ({error})"
        return str(body.get("status")) if status == 200 and isinstance(body, dict) else str(status)


def _bare_ws_url(ws_url: Any, api_key: str | None) -> str:
    """The order's wsUrl without `?orderId=` (we subscribe by message instead), with
    the key as `?apiKey=` when there is one."""
    if not isinstance(ws_url, str) or not ws_url.startswith(("ws://", "wss://")):
        raise ValueError(f"the API answered no usable wsUrl: {ws_url!r}")
    parsed = urllib.parse.urlsplit(ws_url)
    query = urllib.parse.urlencode({"apiKey": api_key}) if api_key else ""
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path, query, ""))


def _rejection(status: int, body: Any) -> str:
    """A short, countable reason: "HTTP 429 rate_limited", "HTTP 0 connection refused"."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return f"HTTP {status} {body['error'].get('code', '?')}"
    if status == 0:
        return f"no answer ({str(body)[:60]})"
    return f"HTTP {status}"
