"""`order-engine demo`: several orders at once, each one's progress live, one line each."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from order_engine.orders import HAPPY_PATH
from order_engine_cli.client import TERMINAL, OrderClient, follow
from order_engine_cli.dev_key import DEV_KEY_FILE, read_saved_key
from order_engine_cli.options import api_key_option

DEMO_ORDERS = [
    {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"},
    {"type": "market", "tokenIn": "USDC", "tokenOut": "SOL", "amount": "250"},
    {"type": "market", "tokenIn": "SOL", "tokenOut": "BONK", "amount": "0.4"},
    {"type": "market", "tokenIn": "JUP", "tokenOut": "USDC", "amount": "120"},
    {"type": "market", "tokenIn": "USDT", "tokenOut": "USDC", "amount": "500"},
]
# `--limit`: limit orders that wait for the price watch (SOL trades near 150 USDC, JUP
# near 0.9): some limits the market meets at once, some near it (met if the price walks
# up in time), some it never meets. Each expires after LIMIT_WAIT_SECONDS.
LIMIT_DEMO_ORDERS = [
    {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5", "limitPrice": "140"},
    {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "limitPrice": "149"},
    {"type": "limit", "tokenIn": "JUP", "tokenOut": "USDC", "amount": "120", "limitPrice": "0.8"},
    {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "2", "limitPrice": "400"},
    {"type": "limit", "tokenIn": "JUP", "tokenOut": "USDC", "amount": "50", "limitPrice": "0.91"},
]  # fmt: skip
LIMIT_WAIT_SECONDS = 20
STATUS_STYLE = {
    "confirmed": "bold green",
    "failed": "bold red",
    "expired": "bold magenta",
    "watching": "cyan",
}


@dataclass
class Row:
    order: dict[str, Any]
    order_id: str = "…"
    status: str = "sending"
    started: float = field(default_factory=time.monotonic)
    timeline: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    venue: str = ""
    outcome: str = ""

    def record(self, event: dict[str, Any]) -> None:
        self.status = event["status"]
        self.statuses.append(self.status)
        self.timeline.append(f"{time.monotonic() - self.started:.1f}")
        data = event.get("data") or {}
        if self.status == "watching":
            self.outcome = f"waiting for {data.get('limitPrice')} {self.order['tokenOut']}"
        elif self.status == "routing":
            self.venue = f"{data.get('venue', '?')}"
            trigger = data.get("trigger")
            if trigger:
                self.outcome = f"fired at {Decimal(trigger['price']):.6g} (tick {trigger['tick']})"
        elif self.status == "confirmed":
            amount_out = Decimal(data.get("amountOut") or 0)
            price = Decimal(data.get("executedPrice") or 0)
            self.outcome = f"{amount_out:.6g} {self.order['tokenOut']} @ {price:.6g}"
        elif self.status in ("failed", "expired"):
            self.outcome = str(data.get("reason", ""))

    def progress(self) -> str:
        """One box per state reached: ■■■□□ is submitted."""
        reached = len(self.timeline)
        if self.status in ("failed", "expired"):
            return "[red]" + "■" * (reached - 1) + "✗[/]"
        states = len(HAPPY_PATH) + (self.order["type"] == "limit")
        return "[green]" + "■" * reached + "[/]" + "□" * max(0, states - reached)


def render(rows: list[Row]) -> Table:
    table = Table(title="order-engine demo  (seconds: when each state arrived)", expand=True)
    for column in ("order", "trade", "progress", "status", "venue", "seconds", "result"):
        table.add_column(column, overflow="fold")
    for row in rows:
        trade = f"{row.order['amount']} {row.order['tokenIn']} → {row.order['tokenOut']}"
        if "limitPrice" in row.order:
            trade += f" ≥ {row.order['limitPrice']}"
        style = STATUS_STYLE.get(row.status, "yellow")
        table.add_row(
            row.order_id[:8],
            trade,
            row.progress(),
            f"[{style}]{row.status}[/]",
            row.venue,
            " ".join(row.timeline),
            row.outcome,
        )
    return table


async def run_one(client: OrderClient, row: Row) -> None:
    try:
        placed = await asyncio.to_thread(client.place, row.order)
        row.order_id = placed["orderId"]
        # Subscribed by message, not by wsUrl's ?orderId=: the snapshot comes at once, so
        # the states show as they happen rather than a second late, all together.
        ws_url = placed["wsUrl"].split("?", 1)[0]
        async for event in follow(ws_url, api_key=client.api_key, subscribe=row.order_id):
            row.record(event)
    except Exception as exc:
        row.status, row.outcome = "error", str(exc)


def demo_orders(count: int, *, limit: bool) -> list[dict[str, Any]]:
    if not limit:
        return [DEMO_ORDERS[i % len(DEMO_ORDERS)] for i in range(count)]
    expires_at = (datetime.now(UTC) + timedelta(seconds=LIMIT_WAIT_SECONDS)).isoformat()
    return [
        {**LIMIT_DEMO_ORDERS[i % len(LIMIT_DEMO_ORDERS)], "expiresAt": expires_at}
        for i in range(count)
    ]


async def run_demo(
    api_url: str, api_key: str, count: int, timeout: float, *, limit: bool = False
) -> list[Row]:
    client = OrderClient(api_url, api_key=api_key)
    rows = [Row(order=order) for order in demo_orders(count, limit=limit)]
    console = Console()
    with Live(render(rows), console=console, refresh_per_second=8) as live:
        tasks = [asyncio.create_task(run_one(client, row)) for row in rows]
        deadline = time.monotonic() + timeout
        while not all(task.done() for task in tasks) and time.monotonic() < deadline:
            live.update(render(rows))
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        live.update(render(rows))
    return rows


@click.command()
@click.option(
    "--api",
    "api_url",
    default="http://127.0.0.1:3000",
    show_default=True,
    help="Base URL of the HTTP API (a running `order-engine up`, or AWS).",
)
@click.option(
    "--count",
    default=5,
    show_default=True,
    type=click.IntRange(1, 50),
    help="How many orders to place at once.",
)
@click.option(
    "--limit",
    is_flag=True,
    help=f"Limit orders instead: they wait for the price watch, then fire or expire "
    f"(after {LIMIT_WAIT_SECONDS} s).",
)
@api_key_option()
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for all.")
def demo(api_url: str, count: int, limit: bool, api_key: str | None, timeout: float) -> None:
    """Place several orders at once and watch each move through its states."""
    api_key = api_key or read_saved_key(DEV_KEY_FILE)
    if api_key is None:
        raise click.UsageError(
            "no API key: pass --api-key, set ORDER_ENGINE_API_KEY, or run `order-engine up` "
            "once on a new database to make a development key"
        )
    rows = asyncio.run(run_demo(api_url, api_key, count, timeout, limit=limit))
    done = sum(row.status in TERMINAL for row in rows)
    click.echo(
        f"{done} of {len(rows)} orders finished "
        f"({sum(row.status == 'confirmed' for row in rows)} confirmed"
        + (f", {sum(row.status == 'expired' for row in rows)} expired" if limit else "")
        + ")."
    )
    if done < len(rows):
        raise SystemExit(1)
