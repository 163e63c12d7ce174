"""The simulated Raydium and Meteora behave like venues: prices, fees, latency, slippage,
faults, and at most one swap per signature."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from order_engine.dex.market import METEORA, RAYDIUM, REFERENCE_USD, VENUE_PAIRS
from order_engine.dex.simulation import Fault, Script, SimulatedVenue, simulated_venues
from order_engine.dex.venue import (
    Confirmation,
    InMemoryLedger,
    Quote,
    SignedTransaction,
    Submission,
    b58encode,
    round_down,
)
from order_engine.errors import NoRoute, VenueTimeout, VenueUnavailable
from order_engine.settings import DexSettings
from order_engine.tokens import WSOL_MINT, Token, get_token

SOL, USDC, BONK = get_token("SOL"), get_token("USDC"), get_token("BONK")
BOTH_VENUES_PAIRS = sorted(set(VENUE_PAIRS[RAYDIUM]) & set(VENUE_PAIRS[METEORA]))


def venues(
    seed: int | None = 7,
    ledger: InMemoryLedger | None = None,
    faults: dict[str, Fault] | None = None,
    **settings: Any,
) -> dict[str, SimulatedVenue]:
    settings.setdefault("latency_scale", 0)
    dex = DexSettings(seed=seed, **settings)
    return {venue.name: venue for venue in simulated_venues(dex, ledger, faults=faults)}


def usd_worth(token: Token, usd: str) -> Decimal:
    """An amount of `token` worth about `usd`, at the token's decimals."""
    return (Decimal(usd) / REFERENCE_USD[token.symbol]).quantize(Decimal(1).scaleb(-2))


def signed(venue: SimulatedVenue, order_id: str | None = None) -> SignedTransaction:
    quote = venue.quote(WSOL_MINT, USDC.mint, Decimal("2"))
    min_out = (quote.amount_out * Decimal("0.99")).quantize(Decimal("0.000001"))
    return venue.build(
        order_id or str(uuid.uuid4()), quote, min_out, wrap_sol=True, unwrap_sol=False
    )


def b58decode(text: str) -> bytes:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    number = 0
    for char in text:
        number = number * 58 + alphabet.index(char)
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


# --- prices and fees -----------------------------------------------------------------


def test_quotes_are_net_of_fees_and_rounded_down_to_the_output_decimals() -> None:
    raydium = venues()[RAYDIUM]
    quote = raydium.quote(WSOL_MINT, USDC.mint, Decimal("1.5"))

    assert quote.fee_bps == 25
    assert quote.amount_out == round_down(quote.amount_out, USDC.decimals)
    gross = quote.amount_out + quote.fee_amount
    assert abs(quote.fee_amount - gross * Decimal("0.0025")) < Decimal("0.00001")
    assert quote.price == pytest.approx(quote.amount_out / quote.amount_in)
    assert Decimal(140) < quote.price < Decimal(160)


def test_meteora_fees_are_set_per_pool_between_10_and_80_bps() -> None:
    meteora = venues()[METEORA]
    fees = {
        meteora.quote(get_token(a).pool_mint, get_token(b).pool_mint, Decimal(1)).fee_bps
        for a, b in VENUE_PAIRS[METEORA]
    }
    assert len(fees) > 1
    assert all(10 <= fee <= 80 for fee in fees)


def test_bigger_orders_get_worse_prices() -> None:
    raydium = venues()[RAYDIUM]
    small = raydium.quote(WSOL_MINT, USDC.mint, Decimal("1"))
    large = raydium.quote(WSOL_MINT, USDC.mint, Decimal("20000"))

    assert large.price < small.price * Decimal("0.95")
    assert large.price_impact_bps > 500 > small.price_impact_bps


def test_a_venue_without_a_pool_for_the_pair_has_no_route() -> None:
    with pytest.raises(NoRoute, match="meteora has no pool for RAY/USDC"):
        venues()[METEORA].quote(get_token("RAY").mint, USDC.mint, Decimal(1))


def test_over_500_seeded_quotes_the_two_venues_stay_2_to_5_percent_apart() -> None:
    gross_spreads, net_spreads, winners = [], [], set()
    for seed in range(40):
        sim = venues(seed)
        for a, b in BOTH_VENUES_PAIRS:
            for token_in, token_out in ((get_token(a), get_token(b)), (get_token(b), get_token(a))):
                amount = usd_worth(token_in, "50")
                quotes = [
                    sim[name].quote(token_in.pool_mint, token_out.pool_mint, amount)
                    for name in (RAYDIUM, METEORA)
                ]
                gross = [q.amount_out + q.fee_amount for q in quotes]
                net = [q.amount_out for q in quotes]
                gross_spreads.append(max(gross) / min(gross) - 1)
                net_spreads.append(max(net) / min(net) - 1)
                winners.add(max(quotes, key=lambda q: q.amount_out).venue)

    assert len(net_spreads) >= 500
    assert all(Decimal("0.02") <= spread <= Decimal("0.05") for spread in gross_spreads)
    assert all(Decimal("0.02") <= spread <= Decimal("0.05") for spread in net_spreads)
    assert winners == {RAYDIUM, METEORA}  # which venue is better varies


def test_the_same_seed_gives_the_same_quotes() -> None:
    def some_quotes(seed: int) -> list[Quote]:
        sim = venues(seed)
        return [
            sim[name].quote(WSOL_MINT, USDC.mint, Decimal(amount))
            for amount in ("1", "2.5", "10")
            for name in (RAYDIUM, METEORA)
        ]

    assert some_quotes(11) == some_quotes(11)
    assert some_quotes(11) != some_quotes(12)


def test_an_unseeded_simulation_draws_its_own_seed() -> None:
    first = venues(seed=None)[RAYDIUM].quote(WSOL_MINT, USDC.mint, Decimal(1))
    second = venues(seed=None)[RAYDIUM].quote(WSOL_MINT, USDC.mint, Decimal(1))
    assert first != second


# --- signatures, submission and confirmation ---------------------------------------------


def test_rebuilding_yields_the_same_signature_of_64_bytes() -> None:
    order_id = str(uuid.uuid4())
    first = signed(venues()[RAYDIUM], order_id)
    # Another process, another quote tick: same order, same route, same signature.
    again = signed(venues()[RAYDIUM], order_id)

    assert again.signature == first.signature
    assert len(b58decode(first.signature)) == 64
    assert signed(venues()[RAYDIUM]).signature != first.signature


def test_resubmitting_a_signed_transaction_never_swaps_twice() -> None:
    ledger = InMemoryLedger()
    raydium = venues(ledger=ledger)[RAYDIUM]
    tx = signed(raydium)

    first = raydium.submit(tx)
    again = raydium.submit(tx)
    # A redelivered message in another process rebuilds from JSON and resends.
    other_process = venues(ledger=ledger)[RAYDIUM]
    third = other_process.submit(SignedTransaction.from_dict(json.loads(json.dumps(tx.to_dict()))))

    assert [first.first_submission, again.first_submission, third.first_submission] == [
        True,
        False,
        False,
    ]
    assert first.submitted_at == again.submitted_at == third.submitted_at
    assert len(ledger) == 1


def test_a_submit_that_times_out_may_have_landed_and_its_retry_is_deduplicated() -> None:
    ledger = InMemoryLedger()
    raydium = venues(ledger=ledger, faults={RAYDIUM: Fault(submit=Script.first(1, "timeout"))})[
        RAYDIUM
    ]
    tx = signed(raydium)

    with pytest.raises(VenueTimeout):
        raydium.submit(tx)
    retry = raydium.submit(tx)

    assert retry.first_submission is False
    assert len(ledger) == 1


def test_a_lookup_finds_a_submission_whose_answer_was_lost_and_nothing_else() -> None:
    ledger = InMemoryLedger()
    both = venues(ledger=ledger, faults={RAYDIUM: Fault(submit=Script.always("timeout"))})
    raydium = both[RAYDIUM]
    tx = signed(raydium)
    assert raydium.lookup(tx.signature) is None  # never sent

    with pytest.raises(VenueTimeout):
        raydium.submit(tx)  # landed; the answer did not come back

    found = raydium.lookup(tx.signature)
    assert found is not None and (found.signature, found.venue) == (tx.signature, RAYDIUM)
    assert found.first_submission is False  # a lookup swaps nothing
    assert both[METEORA].lookup(tx.signature) is None  # another venue's chain record
    assert len(ledger) == 1


def test_the_ledger_records_a_signature_once_under_concurrent_submits() -> None:
    ledger = InMemoryLedger()
    results: list[bool] = []

    def record() -> None:
        results.append(ledger.record("sig", RAYDIUM, "order-1", {"a": 1}).first)

    threads = [threading.Thread(target=record) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * 19 + [True]


def test_a_signatures_confirmation_is_deterministic_in_every_process() -> None:
    ledger = InMemoryLedger()
    tx = signed(venues(ledger=ledger)[METEORA])
    venues(ledger=ledger)[METEORA].submit(tx)

    confirmations = [venues(ledger=ledger)[METEORA].confirm(tx.signature) for _ in range(3)]

    assert confirmations[0] == confirmations[1] == confirmations[2]
    assert confirmations[0].signature == tx.signature


def test_confirm_of_an_unknown_signature_is_not_found() -> None:
    with pytest.raises(VenueUnavailable, match="transaction nope not found"):
        venues()[RAYDIUM].confirm("nope")


def test_confirm_counts_from_the_ledgers_submission_time() -> None:
    # Submitted 10 s ago (say, by a process that then crashed): with realistic latency
    # the swap is already final, so confirm answers at once.
    ledger = InMemoryLedger(clock=lambda: datetime.now(UTC) - timedelta(seconds=10))
    tx = signed(venues(ledger=ledger)[RAYDIUM])
    venues(ledger=ledger)[RAYDIUM].submit(tx)

    started = time.monotonic()
    confirmation = venues(ledger=ledger, latency_scale=1.0)[RAYDIUM].confirm(tx.signature)

    assert time.monotonic() - started < 0.5
    assert confirmation.signature == tx.signature


def test_with_the_default_tolerance_some_but_not_most_swaps_fail_on_slippage() -> None:
    sim = venues(seed=3)
    raydium = sim[RAYDIUM]
    outcomes = []
    for _ in range(400):
        tx = signed(raydium)  # 1 % tolerance, as an order's default slippageBps
        raydium.submit(tx)
        outcomes.append(raydium.confirm(tx.signature))

    failed = [c for c in outcomes if not c.success]
    assert 0.005 <= len(failed) / len(outcomes) <= 0.15
    assert all(c.amount_out is None and c.executed_price is None for c in failed)
    assert all(c.reason and c.reason.startswith("slippage exceeded") for c in failed)
    succeeded = [c for c in outcomes if c.success]
    assert all(c.amount_out and c.executed_price and c.reason is None for c in succeeded)


def test_a_swap_that_misses_its_minimum_says_what_it_would_have_received() -> None:
    ledger = InMemoryLedger()
    raydium = venues(ledger=ledger)[RAYDIUM]
    quote = raydium.quote(WSOL_MINT, USDC.mint, Decimal("2"))
    # Zero tolerance: any adverse drift fails, and most drift is adverse.
    failure = None
    for n in range(50):
        tx = raydium.build(f"order-{n}", quote, quote.amount_out, wrap_sol=True, unwrap_sol=False)
        raydium.submit(tx)
        confirmation = raydium.confirm(tx.signature)
        if not confirmation.success:
            failure = confirmation
            break

    assert failure is not None and failure.reason is not None
    assert failure.reason.startswith("slippage exceeded: would receive ")
    assert f"USDC, minimum {quote.amount_out}" in failure.reason


# --- faults -----------------------------------------------------------------------------


def test_scripted_faults_play_out_call_by_call() -> None:
    script = Script.of("timeout", "unavailable", "ok", then="unavailable")
    meteora = venues(faults={METEORA: Fault(quote=script)})[METEORA]

    def attempt() -> str:
        try:
            meteora.quote(WSOL_MINT, USDC.mint, Decimal(1))
        except VenueTimeout:
            return "timeout"
        except VenueUnavailable:
            return "unavailable"
        return "ok"

    outcomes = [attempt() for _ in range(5)]
    assert outcomes == ["timeout", "unavailable", "ok", "unavailable", "unavailable"]


def test_failing_the_next_confirms_leaves_other_operations_alone() -> None:
    sim = venues(faults={RAYDIUM: Fault(confirm=Script.first(2, "unavailable"))})
    raydium = sim[RAYDIUM]
    tx = signed(raydium)
    raydium.submit(tx)

    for _ in range(2):
        with pytest.raises(VenueUnavailable):
            raydium.confirm(tx.signature)
    assert raydium.confirm(tx.signature).signature == tx.signature
    sim[METEORA].quote(WSOL_MINT, USDC.mint, Decimal(1))  # the other venue is unaffected


def test_fault_rates_fail_about_that_share_of_calls() -> None:
    raydium = venues(failure_rate=0.1, timeout_rate=0.1)[RAYDIUM]
    errors = {"timeout": 0, "unavailable": 0}
    for _ in range(1000):
        try:
            raydium.quote(WSOL_MINT, USDC.mint, Decimal(1))
        except VenueTimeout:
            errors["timeout"] += 1
        except VenueUnavailable:
            errors["unavailable"] += 1

    assert 60 <= errors["timeout"] <= 140
    assert 60 <= errors["unavailable"] <= 140


def test_faults_for_an_unknown_venue_are_refused() -> None:
    with pytest.raises(ValueError, match="orca"):
        venues(faults={"orca": Fault.down()})


# --- latency ----------------------------------------------------------------------------


def test_a_quote_takes_about_200_ms_at_latency_scale_1() -> None:
    raydium = venues(latency_scale=1.0)[RAYDIUM]
    for _ in range(2):
        started = time.monotonic()
        raydium.quote(WSOL_MINT, USDC.mint, Decimal(1))
        assert 0.14 <= time.monotonic() - started <= 0.5


def test_a_swap_is_final_2_to_3_seconds_after_submission_scaled() -> None:
    raydium = venues(latency_scale=0.1)[RAYDIUM]
    tx = signed(raydium)
    started = time.monotonic()
    raydium.submit(tx)
    raydium.confirm(tx.signature)

    assert 0.19 <= time.monotonic() - started <= 0.6


def test_a_timeout_waits_out_the_timeout_unless_latency_scale_is_0() -> None:
    always = {RAYDIUM: Fault(quote=Script.always("timeout"))}
    slow = venues(faults=always, latency_scale=1.0, quote_timeout=0.1)[RAYDIUM]
    started = time.monotonic()
    with pytest.raises(VenueTimeout):
        slow.quote(WSOL_MINT, USDC.mint, Decimal(1))
    assert 0.09 <= time.monotonic() - started <= 0.5


def test_latency_scale_0_never_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s at latency scale 0")

    monkeypatch.setattr(time, "sleep", no_sleep)
    fault = Fault(quote=Script.first(1, "timeout"), confirm=Script.first(1, "unavailable"))
    faults = {METEORA: fault}
    meteora = venues(faults=faults, failure_rate=0.2, timeout_rate=0.2)[METEORA]
    for _ in range(20):
        try:
            tx = signed(meteora)
            meteora.submit(tx)
            meteora.confirm(tx.signature)
        except (VenueTimeout, VenueUnavailable):
            pass


# --- value types --------------------------------------------------------------------------


def test_value_types_survive_a_json_round_trip() -> None:
    ledger = InMemoryLedger()
    raydium = venues(ledger=ledger)[RAYDIUM]
    quote = raydium.quote(BONK.mint, WSOL_MINT, Decimal("1000000"))
    tx = raydium.build("order-1", quote, quote.amount_out / 2, wrap_sol=False, unwrap_sol=True)
    submission = raydium.submit(tx)
    confirmation = raydium.confirm(tx.signature)
    failed = Confirmation("sig", False, None, None, "slippage exceeded")

    def through_json(value: Any) -> Any:
        return type(value).from_dict(json.loads(json.dumps(value.to_dict())))

    for value in (quote, tx, submission, confirmation, failed):
        assert through_json(value) == value
    assert isinstance(through_json(submission), Submission)


def test_base58_matches_the_bitcoin_alphabet_and_keeps_leading_zeros() -> None:
    assert b58encode(b"hello world") == "StV1DL6CwTryKyV"
    assert b58encode(b"\0\0\x28\x7f\xb4\xcd") == "11233QC4"
