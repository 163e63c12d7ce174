"""The router asks every venue at once, takes the best output after fees, explains its
choice, and turns venue failures into the right kind of error."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from order_engine.dex.market import METEORA, RAYDIUM
from order_engine.dex.router import RouteDecision, Router
from order_engine.dex.simulation import Fault, Script, simulated_venues
from order_engine.dex.venue import (
    Confirmation,
    Quote,
    SignedTransaction,
    Submission,
    Venue,
    round_down,
)
from order_engine.errors import (
    NoRoute,
    SlippageExceeded,
    TransientError,
    VenueTimeout,
    VenueUnavailable,
)
from order_engine.settings import DexSettings
from order_engine.tokens import WSOL_MINT, get_token

SOL, USDC, USDT = get_token("SOL"), get_token("USDC"), get_token("USDT")
BONK, JUP, RAY = get_token("BONK"), get_token("JUP"), get_token("RAY")


class StubVenue:
    """A venue whose quote is whatever the test says: a Quote, an exception, or a delay."""

    def __init__(self, name: str, answer: Callable[[Decimal], Quote], delay: float = 0) -> None:
        self.name = name
        self._answer = answer
        self._delay = delay
        self.threads: set[str] = set()

    def quote(self, input_mint: str, output_mint: str, amount_in: Decimal) -> Quote:
        self.threads.add(threading.current_thread().name)
        if self._delay:
            time.sleep(self._delay)
        return self._answer(amount_in)

    def build(self, *args: Any, **kwargs: Any) -> SignedTransaction:
        raise NotImplementedError

    def submit(self, tx: SignedTransaction) -> Submission:
        raise NotImplementedError

    def confirm(self, signature: str) -> Confirmation:
        raise NotImplementedError


def fixed(name: str, gross: str, fee_bps: int, impact_bps: int = 0) -> Callable[[Decimal], Quote]:
    def answer(amount_in: Decimal) -> Quote:
        fee = Decimal(gross) * fee_bps / 10_000
        out = Decimal(gross) - fee
        return Quote(name, WSOL_MINT, USDC.mint, amount_in, out, fee_bps, fee, out / amount_in,
                     impact_bps)  # fmt: skip

    return answer


def failing(exc: Exception) -> Callable[[Decimal], Quote]:
    def answer(amount_in: Decimal) -> Quote:
        raise exc

    return answer


@pytest.fixture
def make_router() -> Iterator[Callable[..., Router]]:
    routers: list[Router] = []

    def make(
        venues: list[Venue] | None = None,
        *,
        faults: dict[str, Fault] | None = None,
        seed: int = 5,
        quote_timeout: float = 1.0,
    ) -> Router:
        if venues is None:
            dex = DexSettings(latency_scale=0, seed=seed, quote_timeout=quote_timeout)
            venues = list(simulated_venues(dex, faults=faults))
        router = Router(venues, quote_timeout=quote_timeout)
        routers.append(router)
        return router

    yield make
    for router in routers:
        router.close()


# --- choosing ---------------------------------------------------------------------------


def test_the_best_output_after_fees_wins_even_against_a_better_price_before_fees(
    make_router: Callable[..., Router],
) -> None:
    router = make_router(
        [
            StubVenue("raydium", fixed("raydium", "150.00", fee_bps=100)),  # 148.50 net
            StubVenue("meteora", fixed("meteora", "149.40", fee_bps=25)),  # 149.0265 net
        ]
    )
    decision = router.route(SOL, USDC, Decimal(1), 100)

    assert decision.venue == "meteora"
    assert decision.reason == (
        "meteora returns 0.4 % more USDC after fees (0.25 % vs 1.00 %); "
        "raydium quoted more before fees"
    )


def test_the_chosen_venue_always_has_the_largest_net_output(
    make_router: Callable[..., Router],
) -> None:
    chosen = set()
    for seed in range(30):
        router = make_router(seed=seed)
        orders = ((SOL, USDC, "3"), (USDC, SOL, "250"), (BONK, SOL, "1e7"))
        for token_in, token_out, amount in orders:
            decision = router.route(token_in, token_out, Decimal(amount), 100)
            outs = {o.venue: o.quote.amount_out for o in decision.quotes if o.quote is not None}
            assert decision.quote.amount_out == max(outs.values())
            assert decision.venue == decision.quote.venue
            chosen.add(decision.venue)
    assert chosen == {RAYDIUM, METEORA}


def test_the_reason_names_the_gain_and_both_fees(make_router: Callable[..., Router]) -> None:
    decision = make_router().route(SOL, USDC, Decimal(2), 100)
    best = decision.quote
    other = next(o.quote for o in decision.quotes if o.quote and o.venue != decision.venue)
    gain = (best.amount_out / other.amount_out - 1) * 100

    assert decision.reason.startswith(f"{decision.venue} returns {gain:.1f} % more USDC after fees")
    assert f"({best.fee_bps / 100:.2f} % vs {other.fee_bps / 100:.2f} %)" in decision.reason


def test_min_amount_out_is_the_quote_less_the_tolerance_rounded_down(
    make_router: Callable[..., Router],
) -> None:
    decision = make_router().route(USDC, SOL, Decimal(100), 50)
    exact = decision.quote.amount_out * Decimal("0.995")

    assert decision.slippage_bps == 50
    assert decision.min_amount_out <= exact < decision.min_amount_out + Decimal("1e-9")
    assert decision.min_amount_out == round_down(decision.min_amount_out, SOL.decimals)


# --- wrapped SOL ----------------------------------------------------------------------------


def test_sol_orders_quote_and_build_through_wrapped_sol(make_router: Callable[..., Router]) -> None:
    router = make_router()
    decision = router.route(SOL, USDC, Decimal("1.5"), 100)
    tx = router.venue(decision.venue).build(
        str(uuid.uuid4()),
        decision.quote,
        decision.min_amount_out,
        wrap_sol=decision.wrap_sol,
        unwrap_sol=decision.unwrap_sol,
    )

    assert (decision.wrap_sol, decision.unwrap_sol) == (True, False)
    assert all(o.quote and o.quote.input_mint == WSOL_MINT for o in decision.quotes)
    assert (decision.token_in, decision.token_out) == ("SOL", "USDC")
    assert tx.input_mint == WSOL_MINT
    assert tx.instructions[0] == "createAssociatedTokenAccount wSOL"
    assert "syncNative wSOL" in tx.instructions
    assert tx.instructions[-2].startswith(f"swap {decision.venue} 1.50 wSOL")
    assert tx.instructions[-1] == "closeAccount wSOL"


def test_sol_as_output_is_unwrapped_after_the_swap(make_router: Callable[..., Router]) -> None:
    router = make_router()
    decision = router.route(USDT, SOL, Decimal(300), 100)
    tx = router.venue(decision.venue).build(
        "order-1", decision.quote, decision.min_amount_out, wrap_sol=False, unwrap_sol=True
    )

    assert (decision.wrap_sol, decision.unwrap_sol) == (False, True)
    assert decision.quote.output_mint == WSOL_MINT
    assert not any(step.startswith("syncNative") for step in tx.instructions)
    assert tx.instructions[-1] == "closeAccount wSOL"


def test_tokens_other_than_sol_need_no_wrapping(make_router: Callable[..., Router]) -> None:
    router = make_router()
    decision = router.route(BONK, USDC, Decimal(1_000_000), 100)
    tx = router.venue(decision.venue).build(
        "order-2", decision.quote, decision.min_amount_out, wrap_sol=False, unwrap_sol=False
    )
    assert len(tx.instructions) == 1 and tx.instructions[0].startswith("swap ")


# --- failures ---------------------------------------------------------------------------


def test_a_venue_timeout_falls_back_to_the_other_venue(make_router: Callable[..., Router]) -> None:
    router = make_router(faults={RAYDIUM: Fault(quote=Script.always("timeout"))})
    decision = router.route(SOL, USDC, Decimal(1), 100)
    raydium = next(o for o in decision.quotes if o.venue == RAYDIUM)

    assert decision.venue == METEORA
    assert raydium.quote is None and raydium.error_code == "venue_timeout"
    assert decision.reason == "raydium timed out; meteora was the only quote"


def test_a_venue_slower_than_the_quote_timeout_is_left_behind(
    make_router: Callable[..., Router],
) -> None:
    router = make_router(
        [
            StubVenue("raydium", fixed("raydium", "151", 25), delay=0.5),
            StubVenue("meteora", fixed("meteora", "150", 30)),
        ],
        quote_timeout=0.1,
    )
    started = time.monotonic()
    decision = router.route(SOL, USDC, Decimal(1), 100)

    assert time.monotonic() - started < 0.5
    assert decision.venue == "meteora"
    assert decision.quotes[0].error == "no quote within 0.1 s"


def test_venues_are_quoted_concurrently_on_a_reused_pool(
    make_router: Callable[..., Router],
) -> None:
    slow = [StubVenue(name, fixed(name, "150", 25), delay=0.15) for name in ("raydium", "meteora")]
    router = make_router(slow)

    started = time.monotonic()
    router.route(SOL, USDC, Decimal(1), 100)
    assert time.monotonic() - started < 0.27  # not 0.3: both at once

    for _ in range(3):
        router.route(SOL, USDC, Decimal(1), 100)
    threads = slow[0].threads | slow[1].threads
    assert len(threads) <= 8  # the same few threads, not new ones per call
    assert all(name.startswith("router-quote") for name in threads)


def test_an_error_from_one_venue_is_recorded_and_the_other_is_used(
    make_router: Callable[..., Router],
) -> None:
    router = make_router(
        [
            StubVenue("raydium", failing(ConnectionResetError("peer reset"))),
            StubVenue("meteora", fixed("meteora", "150", 30)),
        ]
    )
    decision = router.route(SOL, USDC, Decimal(1), 100)

    assert decision.venue == "meteora"
    assert decision.quotes[0].error == "ConnectionResetError: peer reset"
    assert decision.reason.startswith("raydium failed (ConnectionResetError: peer reset)")


def test_both_venues_down_is_a_transient_error(make_router: Callable[..., Router]) -> None:
    router = make_router(faults={RAYDIUM: Fault.down(), METEORA: Fault.down()})
    with pytest.raises(VenueUnavailable, match="raydium was unavailable; meteora was unavailable"):
        router.route(SOL, USDC, Decimal(1), 100)


def test_both_venues_timing_out_is_a_venue_timeout(make_router: Callable[..., Router]) -> None:
    timeout = Fault(quote=Script.always("timeout"))
    router = make_router(faults={RAYDIUM: timeout, METEORA: timeout})
    with pytest.raises(VenueTimeout):
        router.route(SOL, USDC, Decimal(1), 100)


def test_the_only_venue_with_the_pool_being_down_is_still_transient(
    make_router: Callable[..., Router],
) -> None:
    # Meteora has no RAY pool; Raydium has one but is down: retrying may well work.
    router = make_router(faults={RAYDIUM: Fault.down()})
    with pytest.raises(TransientError):
        router.route(RAY, USDC, Decimal(10), 100)


def test_a_pair_no_venue_lists_has_no_route(make_router: Callable[..., Router]) -> None:
    with pytest.raises(NoRoute, match="no venue has a pool for BONK/JUP"):
        make_router().route(BONK, JUP, Decimal(1_000_000), 100)


def test_a_pair_one_venue_lists_routes_there_and_says_so(
    make_router: Callable[..., Router],
) -> None:
    decision = make_router().route(RAY, USDC, Decimal(10), 100)
    assert decision.venue == RAYDIUM
    assert decision.reason == "meteora has no RAY/USDC pool; raydium was the only quote"


def test_a_huge_order_exceeds_the_slippage_tolerance_at_quote_time(
    make_router: Callable[..., Router],
) -> None:
    with pytest.raises(SlippageExceeded) as raised:
        make_router().route(SOL, USDC, Decimal(50_000), 100)
    reason = raised.value.reason
    impact = int(reason.split("price impact of ")[1].split(" bps")[0])
    assert impact > 100
    assert "slippage tolerance of 100 bps" in reason


def test_an_order_too_small_to_buy_anything_has_no_route(
    make_router: Callable[..., Router],
) -> None:
    with pytest.raises(NoRoute, match="too small"):
        make_router().route(BONK, SOL, Decimal("0.00001"), 100)


# --- the decision as data ---------------------------------------------------------------------


def test_a_route_decision_survives_a_json_round_trip(make_router: Callable[..., Router]) -> None:
    router = make_router(faults={METEORA: Fault(quote=Script.always("unavailable"))})
    decision = router.route(SOL, USDC, Decimal("2.25"), 75)
    stored = json.loads(json.dumps(decision.to_dict()))

    assert RouteDecision.from_dict(stored) == decision
    assert stored["min_amount_out"] == format(decision.min_amount_out, "f")


def test_venues_are_found_by_name(make_router: Callable[..., Router]) -> None:
    router = make_router()
    assert router.venue(METEORA).name == METEORA
    with pytest.raises(KeyError, match="orca"):
        router.venue("orca")
