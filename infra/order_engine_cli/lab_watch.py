"""`order-engine lab watch-scale`: what the price watch costs per tick, by pair and not by
order. It places limit orders that wait (their limits far above the market) on a few
pairs, runs the watch's per-tick work several times, and counts the venue quotes each
tick asks for; then cancels the orders it placed, so nothing is left waiting."""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import click

from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts
from order_engine.database import Database
from order_engine.dex.simulation import simulated_venues
from order_engine.dex.venue import Quote, SubmissionLedger, Venue
from order_engine.order_request import validate_order_request
from order_engine.orders import Status
from order_engine.outbox import first_messages
from order_engine.settings import Settings
from order_engine.wiring import Engine
from order_engine_cli.database import migrated_database

PAIRS = (("SOL", "USDC", "1.5"), ("JUP", "USDC", "250"), ("BONK", "SOL", "5000000"))


@dataclass
class CountingVenue:
    """A venue that counts the quotes asked of it (everything else passes through)."""

    inner: Venue
    quotes: list[int] = field(default_factory=lambda: [0])

    @property
    def name(self) -> str:
        return self.inner.name

    def quote(self, input_mint: str, output_mint: str, amount_in: Decimal) -> Quote:
        self.quotes[0] += 1
        return self.inner.quote(input_mint, output_mint, amount_in)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)


@click.command("watch-scale")
@click.option("--orders", default=1000, show_default=True, help="Limit orders to place.")
@click.option("--ticks", default=5, show_default=True, help="Ticks to measure.")
def watch_scale(orders: int, ticks: int) -> None:
    """Place ORDERS waiting limit orders on 3 pairs and print the quote rounds (pairs
    quoted) and venue quotes of each tick of the price watch.

    \b
    Example:
      order-engine lab watch-scale --orders 1000 --ticks 5
    """
    with migrated_database() as database:
        os.environ["DATABASE_URL"] = database.url
        counted: list[CountingVenue] = []

        def venues(settings: Settings, ledger: SubmissionLedger) -> Sequence[Venue]:
            built = [CountingVenue(v) for v in simulated_venues(settings.dex, ledger)]
            counted.extend(built)
            return built  # type: ignore[return-value]

        engine = Engine(Settings.from_env(), venues=venues)
        try:
            placed = _place(engine, orders)
            click.echo(f"{len(placed)} limit orders waiting on {len(PAIRS)} pairs")
            click.echo("tick  waiting  quote rounds  venue quotes  seconds")
            for number in range(1, ticks + 1):
                before = sum(v.quotes[0] for v in counted)
                started = time.perf_counter()
                report = engine.watch.scan(number)
                seconds = time.perf_counter() - started
                quotes = sum(v.quotes[0] for v in counted) - before
                click.echo(
                    f"{number:>4}  {report.waiting:>7}  {report.quote_rounds:>12}"
                    f"  {quotes:>12}  {seconds:>7.3f}"
                )
        finally:
            _cancel(engine, placed if "placed" in locals() else [])
            engine.database.close()


def _place(engine: Engine, count: int) -> list[uuid.UUID]:
    issued = Accounts(AccountStore(engine.database)).create_key("lab-watch-scale")
    placed = []
    for (token_in, token_out, amount), _ in zip(itertools.cycle(PAIRS), range(count)):
        request = validate_order_request(
            {
                "type": "limit",
                "tokenIn": token_in,
                "tokenOut": token_out,
                "amount": amount,
                "limitPrice": "900000000",  # far above any price: they wait
            }
        )
        order_id = uuid.uuid4()
        engine.store.create_order(
            order_id, request, account_id=issued.info.account_id, outbox=first_messages(order_id)
        )
        engine.store.transition(order_id, Status.PENDING, Status.WATCHING)
        _mark_sent(engine.database, order_id)
        placed.append(order_id)
    return placed


def _mark_sent(database: Database, order_id: uuid.UUID) -> None:
    # The orders were moved on by hand, not by a route step: their first message has
    # nothing left to do, and a running stack's sweeper must not send it.
    with database.statement() as cur:
        cur.execute("UPDATE outbox SET sent_at = now() WHERE order_id = %s", (order_id,))


def _cancel(engine: Engine, placed: Sequence[uuid.UUID]) -> None:
    for order_id in placed:
        engine.store.transition(
            order_id,
            Status.WATCHING,
            Status.CANCELLED,
            data={"reason": "lab watch-scale measurement over"},
            # Nobody follows these orders: no notification to write.
        )
