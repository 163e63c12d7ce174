"""The price watch: limit orders wait in `watching` until the market meets their limit.

The watch runs on a tick of a few seconds (below EventBridge's one-minute minimum): a
tick is an SQS message that, once handled, sends the next one with DelaySeconds. Each
tick:

1. claims its number on the one-row clock (`tick = n - 1 -> n`, a conditional UPDATE):
   a duplicate delivery, or a second chain seeded beside a live one, claims nothing
   and ends there, so exactly one chain survives;
2. ends every order still watching at its expiresAt: `expired`, with the reason;
3. quotes each token pair that has waiting orders ONCE, at the smallest amount waiting
   on it, whatever the number of orders: the cost of a tick grows with the pairs, not
   the orders;
4. sends the route message of each order whose limit that best net price (after venue
   fees) meets, through the outbox, with the quote that fired it. The route step then
   quotes the order's own amount and moves it on (watching -> routing) with the limit
   as the floor of its slippage check (pipeline.py), or leaves it watching if the
   price is gone by then;
5. sends the next tick, whatever happened above.

A chain dies only with a lost message or a crash between claim and send; the sweeper's
schedule (and every order that starts watching) calls `ensure_running`, which seeds a
new tick when the clock has stood still for a few ticks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from order_engine.database import Repository
from order_engine.errors import OrderEngineError
from order_engine.messaging import ENVELOPE_VERSION
from order_engine.orders import Status
from order_engine.outbox import Outbox, OutboxStore, transition_messages, trigger_message
from order_engine.records import Order
from order_engine.store import Store
from order_engine.tokens import get_token

if TYPE_CHECKING:
    from order_engine.dex.router import Router

log = logging.getLogger(__name__)

# The clock has stood still this many ticks: the chain is dead, seed a new one.
DEAD_AFTER_TICKS = 3
# A tick's quotes tolerate this much price impact at the reference amount.
REFERENCE_SLIPPAGE_BPS = 1000


@dataclass(frozen=True)
class WaitingPair:
    token_in: str
    token_out: str
    smallest_amount: Decimal
    orders: int


@dataclass(frozen=True)
class TickReport:
    tick: int
    claimed: bool  # False: a duplicate or a stray chain's tick, which did nothing
    quote_rounds: int = 0  # pairs quoted this tick (one round each)
    waiting: int = 0
    triggered: int = 0
    expired: int = 0


class WatchStore(Repository):
    """The clock and the watch's questions about waiting orders."""

    def claim_tick(self, tick: int) -> bool:
        with self.database.statement() as cur:
            cur.execute(
                "UPDATE watch_clock SET tick = %s, ticked_at = now()"
                " WHERE tick = %s RETURNING tick",
                (tick, tick - 1),
            )
            return cur.fetchone() is not None

    def clock(self) -> tuple[int, float]:
        """The last tick claimed, and the seconds since."""
        with self.database.statement() as cur:
            cur.execute(
                "SELECT tick, extract(epoch FROM now() - ticked_at)::float AS idle FROM watch_clock"
            )
            row = cur.fetchone()
        assert row is not None  # the migration inserts the one row
        return int(row["tick"]), float(row["idle"])

    def due(self) -> list[Order]:
        with self.database.statement() as cur:
            cur.execute("SELECT * FROM orders WHERE status = 'watching' AND expires_at <= now()")
            return [Order.from_row(row) for row in cur.fetchall()]

    def waiting_pairs(self) -> list[WaitingPair]:
        with self.database.statement() as cur:
            cur.execute(
                "SELECT token_in, token_out, min(amount) AS smallest, count(*) AS orders"
                " FROM orders WHERE status = 'watching' GROUP BY token_in, token_out"
                " ORDER BY token_in, token_out"
            )
            return [
                WaitingPair(row["token_in"], row["token_out"], row["smallest"], row["orders"])
                for row in cur.fetchall()
            ]

    def record_price(self, pair: WaitingPair, price: Decimal, venue: str, tick: int) -> None:
        with self.database.statement() as cur:
            cur.execute(
                "INSERT INTO watch_prices (token_in, token_out, price, venue, tick)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (token_in, token_out) DO UPDATE"
                " SET price = excluded.price, venue = excluded.venue, tick = excluded.tick,"
                " quoted_at = now()",
                (pair.token_in, pair.token_out, price, venue, tick),
            )

    def best_price(self, token_in: str, token_out: str) -> dict[str, Any] | None:
        """The watch's latest best net price of the pair (tokenOut per tokenIn), or None."""
        with self.database.statement() as cur:
            cur.execute(
                "SELECT * FROM watch_prices WHERE token_in = %s AND token_out = %s",
                (token_in, token_out),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return {
            "price": format(row["price"], "f"),
            "venue": row["venue"],
            "tick": row["tick"],
            "at": row["quoted_at"].isoformat(),
        }

    def met(self, pair: WaitingPair, price: Decimal) -> list[UUID]:
        """The waiting orders of `pair` whose limit `price` meets."""
        with self.database.statement() as cur:
            cur.execute(
                "SELECT id FROM orders WHERE status = 'watching' AND token_in = %s"
                " AND token_out = %s AND limit_price <= %s AND expires_at > now()",
                (pair.token_in, pair.token_out, price),
            )
            return [row["id"] for row in cur.fetchall()]


class PriceWatch:
    def __init__(
        self,
        store: WatchStore,
        orders: Store,
        outbox_store: OutboxStore,
        outbox: Outbox,
        router: Callable[[], Router],
        send_tick: Callable[[dict[str, Any], int], None],
        *,
        tick_seconds: int,
    ) -> None:
        self._store = store
        self._orders = orders
        self._outbox_store = outbox_store
        self._outbox = outbox
        self._router = router
        self._send_tick = send_tick
        self.tick_seconds = tick_seconds

    def tick(self, number: int) -> TickReport:
        if not self._store.claim_tick(number):
            log.info("watch tick %d: already claimed, this chain stops", number)
            return TickReport(number, claimed=False)
        try:
            report = self.scan(number)
        finally:
            self._send(number + 1, delay_seconds=self.tick_seconds)
        if report.triggered or report.expired:
            log.info("watch tick %d: %s", number, report)
        return report

    def scan(self, number: int) -> TickReport:
        """A tick's work without the clock: expire what is due, quote each waiting pair
        once, fire what its price meets (`order-engine lab watch-scale` measures this)."""
        expired = self._expire()
        rounds, waiting, triggered = self._trigger(number)
        return TickReport(number, True, rounds, waiting, triggered, expired)

    def ensure_running(self) -> bool:
        """Seed a tick if the chain is dead; whether one was sent. Two seeds at once
        are harmless: only one of them can claim the next number."""
        last, idle = self._store.clock()
        if idle < DEAD_AFTER_TICKS * self.tick_seconds:
            return False
        log.info("watch: the clock stood still %.0f s after tick %d; seeding", idle, last)
        self._send(last + 1, delay_seconds=0)
        return True

    def _send(self, number: int, *, delay_seconds: int) -> None:
        try:
            self._send_tick({"v": ENVELOPE_VERSION, "tick": number}, delay_seconds)
        except Exception:  # the sweeper seeds a new chain
            log.warning("watch: could not send tick %d", number, exc_info=True)

    def _expire(self) -> int:
        expired = 0
        for order in self._store.due():
            reason = (
                f"limit price {order.limit_price} {order.token_out.symbol} per "
                f"{order.token_in.symbol} not reached before expiresAt "
                f"{order.expires_at.isoformat() if order.expires_at else '?'}"
            )
            result = self._orders.transition(
                order.id,
                Status.WATCHING,
                Status.EXPIRED,
                data={"reason": reason},
                changes={"failure_reason": reason},
                outbox=transition_messages(order.id, Status.EXPIRED),
            )
            if result.applied:
                self._outbox.publish(result.outbox, due=result.due)
                expired += 1
        return expired

    def _trigger(self, number: int) -> tuple[int, int, int]:
        rounds = waiting = triggered = 0
        router = self._router()
        for pair in self._store.waiting_pairs():
            waiting += pair.orders
            token_in, token_out = get_token(pair.token_in), get_token(pair.token_out)
            rounds += 1
            try:
                decision = router.route(
                    token_in, token_out, pair.smallest_amount, REFERENCE_SLIPPAGE_BPS
                )
            except OrderEngineError as exc:
                log.warning(
                    "watch tick %d: no quote for %s/%s: %s", number, token_in, token_out, exc
                )
                continue
            best = decision.quote
            price = best.amount_out / best.amount_in
            quote = {
                "tick": number,
                "venue": best.venue,
                "price": format(price.normalize(), "f"),
                "amountIn": format(best.amount_in, "f"),
                "amountOut": format(best.amount_out, "f"),
                "feeBps": best.fee_bps,
                "at": datetime.now(UTC).isoformat(),
            }
            self._store.record_price(pair, price, best.venue, number)
            met = self._store.met(pair, price)
            if met:
                rows = self._outbox_store.write(
                    [trigger_message(order_id, quote, number) for order_id in met]
                )
                self._outbox.publish(rows)
                triggered += len(met)
        return rounds, waiting, triggered
