"""Limit orders through the real handlers, with the price path set by the test: they
wait while the market is below their limit, fire once it is met, execute never below
it; and the watch's tick chain survives duplicates as one chain."""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal
from typing import Any

from order_engine.dex.price_path import ScriptedPath
from order_engine.dex.simulation import simulated_venues
from order_engine.orders import Status
from order_engine.tokens import get_token
from order_engine.watch import TickReport
from tests.support.handler_stack import Stack


def limit_order(limit_price: str) -> dict[str, Any]:
    return {
        "type": "limit",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "1.25",
        "limitPrice": limit_price,
        "slippageBps": 500,
    }


def set_price_path(stack: Stack, path: ScriptedPath) -> None:
    def venues(settings: Any, ledger: Any) -> Any:
        dex = dataclasses.replace(settings.dex, price_path=path.to_json())
        return simulated_venues(dex, ledger)

    stack.engine.use_venues(venues)


def tick(stack: Stack) -> TickReport:
    """One tick of the watch, claimed (another runtime left running in this process may
    claim a number first: then the next)."""
    watch = stack.engine.watch
    while not (report := watch.tick(watch._store.clock()[0] + 1)).claimed:
        pass
    return report


def start_watching(stack: Stack, order_id: str) -> None:
    stack.deliver("route")
    order = stack.engine.store.get_order(order_id)  # type: ignore[arg-type]
    assert order is not None and order.status is Status.WATCHING


def test_a_limit_order_waits_while_the_price_is_below_it_and_fires_when_it_rises(
    fresh: Stack,
) -> None:
    rises_at = time.time() + 2
    # SOL near 150 USDC: at 0.8 of that the limit of 140 is missed, at 1.0 it is met.
    set_price_path(
        fresh,
        ScriptedPath({"SOL/USDC": ((0, Decimal("0.8")), (rises_at, Decimal("1.0")))}),
    )
    order_id = fresh.place(limit_order("140"))
    start_watching(fresh, order_id)

    # (Orders other tests left waiting on this database may be quoted and fired too.)
    assert tick(fresh).quote_rounds >= 1
    fresh.deliver("route")
    assert fresh.engine.store.get_order(order_id).status is Status.WATCHING  # type: ignore[union-attr]

    time.sleep(max(0.0, rises_at - time.time()) + 0.1)
    assert tick(fresh).triggered >= 1
    order = fresh.run(order_id)

    events = fresh.engine.store.get_events(order_id)  # type: ignore[arg-type]
    assert [e.to_status for e in events][:3] == [Status.PENDING, Status.WATCHING, Status.ROUTING]
    trigger = events[2].data["trigger"]
    assert Decimal(trigger["price"]) >= Decimal("140")
    assert order.status is Status.CONFIRMED
    assert order.executed_price is not None and order.executed_price >= Decimal("140")


def test_the_limit_is_the_floor_of_the_swap_whatever_the_slippage_allows(
    fresh: Stack,
) -> None:
    set_price_path(fresh, ScriptedPath({}))
    quote = fresh.engine.router.route(
        get_token("SOL"), get_token("USDC"), Decimal("1.25"), 500
    ).quote
    # Just under the market: 5 % slippage would accept far less, the limit does not.
    limit_price = (quote.price * Decimal("0.998")).quantize(Decimal("0.0001"))
    order_id = fresh.place(limit_order(str(limit_price)))
    start_watching(fresh, order_id)
    assert tick(fresh).triggered >= 1  # this order, and any other waiting one it meets
    fresh.deliver("route")

    routed = fresh.engine.store.get_order(order_id)  # type: ignore[arg-type]
    assert routed is not None and routed.status is Status.ROUTING
    floor = Decimal(routed.route["min_amount_out"])  # type: ignore[index]
    assert floor >= limit_price * Decimal("1.25")
    order = fresh.run(order_id)
    if order.status is Status.CONFIRMED:
        assert order.executed_price is not None and order.executed_price >= limit_price
    else:  # the price drifted below the limit on chain: refused, never executed worse
        assert order.status is Status.FAILED
        assert "slippage exceeded" in (order.failure_reason or "")


def test_a_duplicate_or_stray_tick_claims_nothing_so_one_chain_survives(fresh: Stack) -> None:
    watch = fresh.engine.watch
    last, _ = watch._store.clock()

    assert watch.tick(last + 1).claimed
    assert not watch.tick(last + 1).claimed, "a duplicate delivery of the same tick"
    assert not watch.tick(last + 3).claimed, "a tick of another chain, ahead"
    assert not watch.tick(last).claimed, "a late tick of a dead chain"
    assert watch._store.clock()[0] == last + 1
    assert watch.ensure_running() is False, "the clock just ticked: the chain is alive"
