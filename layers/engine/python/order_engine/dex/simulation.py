"""Simulated Raydium and Meteora: the `Venue` interface with realistic behaviour.

What is modelled, and why:

- Latency: a quote takes 150-250 ms, build and submit tens of ms, a swap is final
  2-3 s after submission. `DexSettings.latency_scale` multiplies every delay; at 0
  nothing sleeps at all, which is what the fast tests rely on.
- Prices, fees, depth: see market.py (one Market shared by both venues); how prices
  move over time (a seeded walk per pair, or a test's script): see price_path.py.
- Execution drift: between quote and execution the price moves (normal, slightly
  negative mean, sd 0.5 %), so with the default 1 % tolerance a few percent of swaps
  fail on slippage. The outcome of a signature is derived from the seed and the
  signature alone, so every process and every retry sees the same result.
- At most one swap per signature: submissions go through a `SubmissionLedger` (in
  PostgreSQL in production) and confirm reads the submission time back from it, so a
  confirm in another process, or after a crash, behaves the same.
- Faults: random per call (`failure_rate`, `timeout_rate`) and scripted per venue and
  operation (`Fault`, `Script`), e.g. "quotes always time out" or "the first two
  confirms fail".
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from order_engine.dex.market import METEORA, RAYDIUM, TICK, Market
from order_engine.dex.price_path import FLAT, PricePath, ScriptedPath, SeededWalk
from order_engine.dex.venue import (
    Confirmation,
    InMemoryLedger,
    Quote,
    SignedTransaction,
    Submission,
    SubmissionLedger,
    b58encode,
    format_amount,
    round_down,
)
from order_engine.errors import VenueTimeout, VenueUnavailable
from order_engine.settings import DexSettings
from order_engine.tokens import WSOL_MINT, find_token

__all__ = ["Fault", "Market", "Outcome", "Script", "SimulatedVenue", "simulated_venues"]

Operation = Literal["quote", "build", "submit", "confirm"]

# Seconds at latency scale 1, drawn uniformly.
LATENCY: dict[Operation, tuple[float, float]] = {
    "quote": (0.15, 0.25),
    "build": (0.01, 0.04),
    "submit": (0.02, 0.06),
}
CONFIRM_SECONDS = (2.0, 3.0)  # from submission to a final result
# Execution price vs quote, as a fraction: slightly adverse on average.
DRIFT_MEAN = -0.001
DRIFT_SD = 0.005


class Outcome(StrEnum):
    OK = "ok"
    TIMEOUT = "timeout"  # VenueTimeout, after waiting out the timeout
    UNAVAILABLE = "unavailable"  # VenueUnavailable, at once


@dataclass(frozen=True)
class Script:
    """The outcomes of successive calls of one operation: call n gets outcomes[n-1],
    every call after the script gets `then`. Calls are counted per venue instance."""

    outcomes: tuple[Outcome, ...] = ()
    then: Outcome = Outcome.OK

    @classmethod
    def always(cls, outcome: Outcome | str) -> Script:
        return cls(then=Outcome(outcome))

    @classmethod
    def first(cls, n: int, outcome: Outcome | str) -> Script:
        """The first `n` calls end in `outcome`, the rest succeed."""
        return cls((Outcome(outcome),) * n)

    @classmethod
    def of(cls, *outcomes: Outcome | str, then: Outcome | str = Outcome.OK) -> Script:
        """An explicit script, e.g. Script.of("timeout", "unavailable", "ok")."""
        return cls(tuple(Outcome(o) for o in outcomes), Outcome(then))

    def at(self, call: int) -> Outcome:
        """The outcome of call number `call` (1-based)."""
        return self.outcomes[call - 1] if call <= len(self.outcomes) else self.then


@dataclass(frozen=True)
class Fault:
    """Injected faults for one venue, one script per operation."""

    quote: Script = field(default_factory=Script)
    build: Script = field(default_factory=Script)
    submit: Script = field(default_factory=Script)
    confirm: Script = field(default_factory=Script)

    @classmethod
    def down(cls) -> Fault:
        """The venue answers every call with an error."""
        down = Script.always(Outcome.UNAVAILABLE)
        return cls(quote=down, build=down, submit=down, confirm=down)

    def script(self, operation: Operation) -> Script:
        scripts = {
            "quote": self.quote,
            "build": self.build,
            "submit": self.submit,
            "confirm": self.confirm,
        }
        return scripts[operation]


class SimulatedVenue:
    """One simulated DEX; implements `Venue`. Thread-safe: the router quotes concurrently."""

    def __init__(
        self,
        name: str,
        market: Market,
        settings: DexSettings,
        ledger: SubmissionLedger,
        *,
        seed: int,
        fault: Fault | None = None,
    ) -> None:
        self.name = name
        self._market = market
        self._settings = settings
        self._ledger = ledger
        self._fault = fault or Fault()
        # The settings' seed (None included), not the drawn one: a signature's fate must
        # be the same in every process, even when each process drew its own seed.
        self._fate_seed = settings.seed
        # Separate streams, so turning on faults or latency does not change the prices.
        self._prices = random.Random(f"{seed}:{name}:prices")
        self._latency = random.Random(f"{seed}:{name}:latency")
        self._faults = random.Random(f"{seed}:{name}:faults")
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()

    # --- the Venue interface ------------------------------------------------------------

    def quote(self, input_mint: str, output_mint: str, amount_in: Decimal) -> Quote:
        self._call("quote")
        with self._lock:
            tick = Decimal(repr(self._prices.uniform(-TICK, TICK)))
        return self._market.quote(self.name, input_mint, output_mint, amount_in, tick=tick)

    def build(
        self,
        order_id: str,
        quote: Quote,
        min_amount_out: Decimal,
        *,
        wrap_sol: bool,
        unwrap_sol: bool,
    ) -> SignedTransaction:
        order_id = str(order_id)  # a UUID object would otherwise leak into the JSON
        if quote.venue != self.name:
            raise ValueError(f"{self.name} cannot build a {quote.venue} quote")
        if wrap_sol and quote.input_mint != WSOL_MINT:
            raise ValueError("wrap_sol needs wSOL as the input mint")
        if unwrap_sol and quote.output_mint != WSOL_MINT:
            raise ValueError("unwrap_sol needs wSOL as the output mint")
        if not 0 < min_amount_out <= quote.amount_out:
            raise ValueError(f"min_amount_out {min_amount_out} outside (0, {quote.amount_out}]")
        self._call("build")
        instructions = self._instructions(quote, min_amount_out, wrap_sol, unwrap_sol)
        # The signature covers the message only (order, route, limits), never the time
        # or the quote's noise: a rebuild after a crash gives the very same signature.
        message = {
            "order_id": order_id,
            "venue": self.name,
            "input_mint": quote.input_mint,
            "output_mint": quote.output_mint,
            "amount_in": format(quote.amount_in, "f"),
            "min_amount_out": format(min_amount_out, "f"),
            "instructions": instructions,
        }
        digest = hashlib.sha512(json.dumps(message, sort_keys=True).encode()).digest()
        return SignedTransaction(
            signature=b58encode(digest),
            order_id=order_id,
            venue=self.name,
            input_mint=quote.input_mint,
            output_mint=quote.output_mint,
            amount_in=quote.amount_in,
            min_amount_out=min_amount_out,
            instructions=tuple(instructions),
            quoted_amount_out=quote.amount_out,
        )

    def submit(self, tx: SignedTransaction) -> Submission:
        if tx.venue != self.name:
            raise ValueError(f"{self.name} cannot submit a {tx.venue} transaction")
        # A submit timeout is the nasty kind: the transaction lands, the answer is lost.
        # The caller retries, and only the ledger stands between it and a second swap.
        outcome = self._call("submit", allow_timeout_after=True)
        entry = self._ledger.record(tx.signature, self.name, tx.order_id, tx.to_dict())
        if outcome is Outcome.TIMEOUT:
            self._time_out("submit")
        return Submission(tx.signature, self.name, entry.submitted_at, entry.first)

    def lookup(self, signature: str) -> Submission | None:
        # A read of the chain's state, which the fault scripts leave alone: they model
        # the venue's answers to swaps, and a lookup's purpose is to outlive them.
        entry = self._ledger.get(signature)
        if entry is None or entry.venue != self.name:
            return None
        return Submission(signature, self.name, entry.submitted_at, first_submission=False)

    def confirm(self, signature: str) -> Confirmation:
        self._call("confirm")
        entry = self._ledger.get(signature)
        if entry is None or entry.venue != self.name:
            raise VenueUnavailable(f"transaction {signature} not found")
        if not entry.payload:
            raise RuntimeError(f"the ledger returned no payload for {signature}")
        tx = SignedTransaction.from_dict(entry.payload)
        fate = random.Random(f"{self._fate_seed}:{signature}")
        final_after = fate.uniform(*CONFIRM_SECONDS) * self._settings.latency_scale
        drift = fate.gauss(DRIFT_MEAN, DRIFT_SD)
        if final_after > 0:
            submitted_at = entry.submitted_at
            if submitted_at.tzinfo is None:
                submitted_at = submitted_at.replace(tzinfo=UTC)
            elapsed = (datetime.now(UTC) - submitted_at).total_seconds()
            # Capped, so a clock skewed between processes never makes us wait longer.
            _sleep(min(final_after, final_after - elapsed))
        token = find_token(tx.output_mint)
        decimals = token.decimals if token else 9
        symbol = token.symbol if token else tx.output_mint
        amount_out = round_down(tx.quoted_amount_out * Decimal(repr(1 + drift)), decimals)
        if amount_out < tx.min_amount_out:
            return Confirmation(
                signature,
                success=False,
                amount_out=None,
                executed_price=None,
                reason=(
                    f"slippage exceeded: would receive {format_amount(amount_out)} {symbol}, "
                    f"minimum {format_amount(tx.min_amount_out)}"
                ),
            )
        price = (amount_out / tx.amount_in).quantize(Decimal("1e-12")).normalize()
        return Confirmation(signature, True, amount_out, price, None)

    # --- internals ------------------------------------------------------------------------

    def _call(self, operation: Operation, *, allow_timeout_after: bool = False) -> Outcome:
        """Wait out the operation's latency, or fail it as the fault script or the fault
        rates say. With allow_timeout_after, a timeout is returned for the caller to
        raise after doing the work."""
        with self._lock:
            self._calls[operation] += 1
            outcome = self._fault.script(operation).at(self._calls[operation])
            # Always draw, so the random streams do not depend on the scripts.
            roll = self._faults.random()
            latency = self._latency.uniform(*LATENCY.get(operation, (0.0, 0.0)))
        timeout_rate, failure_rate = self._settings.timeout_rate, self._settings.failure_rate
        if outcome is Outcome.OK and roll < timeout_rate:
            outcome = Outcome.TIMEOUT
        elif outcome is Outcome.OK and roll < timeout_rate + failure_rate:
            outcome = Outcome.UNAVAILABLE
        if outcome is Outcome.UNAVAILABLE:
            _sleep(latency * self._settings.latency_scale)
            raise VenueUnavailable(f"{self.name} is unavailable (HTTP 503 on {operation})")
        if outcome is Outcome.TIMEOUT and not allow_timeout_after:
            self._time_out(operation)
        _sleep(latency * self._settings.latency_scale)
        return outcome

    def _time_out(self, operation: Operation) -> None:
        # A real client waits out its timeout before giving up; at scale 0, nobody waits.
        _sleep(self._settings.quote_timeout * self._settings.latency_scale)
        raise VenueTimeout(f"{self.name} did not answer the {operation} in time")

    def _instructions(
        self, quote: Quote, min_amount_out: Decimal, wrap_sol: bool, unwrap_sol: bool
    ) -> list[str]:
        """Pools hold wSOL, not SOL: wrap native SOL into a temporary wSOL account before
        the swap, and close that account after, which unwraps whatever it holds."""
        sym_in, sym_out = _symbol(quote.input_mint), _symbol(quote.output_mint)
        steps = []
        if wrap_sol or unwrap_sol:
            steps.append("createAssociatedTokenAccount wSOL")
        if wrap_sol:
            steps += [f"transfer {format_amount(quote.amount_in)} SOL to wSOL", "syncNative wSOL"]
        steps.append(
            f"swap {self.name} {format_amount(quote.amount_in)} {sym_in} "
            f"for at least {format_amount(min_amount_out)} {sym_out}"
        )
        if wrap_sol or unwrap_sol:
            steps.append("closeAccount wSOL")
        return steps


def simulated_venues(
    settings: DexSettings,
    ledger: SubmissionLedger | None = None,
    *,
    faults: Mapping[str, Fault] | None = None,
) -> list[SimulatedVenue]:
    """[raydium, meteora] over one shared market; `faults` is keyed by venue name."""
    faults = faults or {}
    unknown = set(faults) - {RAYDIUM, METEORA}
    if unknown:
        raise ValueError(f"faults for unknown venues: {sorted(unknown)}")
    seed = settings.seed if settings.seed is not None else random.SystemRandom().getrandbits(64)
    market = Market.generate(seed, price_path(settings, seed))
    if ledger is None:
        ledger = InMemoryLedger()
    return [
        SimulatedVenue(name, market, settings, ledger, seed=seed, fault=faults.get(name))
        for name in (RAYDIUM, METEORA)
    ]


def price_path(settings: DexSettings, seed: int) -> PricePath:
    """How prices move: the test's script, else a seeded walk, else not at all."""
    if settings.price_path:
        return ScriptedPath.from_json(settings.price_path)
    return SeededWalk(seed) if settings.price_walk else FLAT


def _sleep(seconds: float) -> None:
    # Never call time.sleep(0): "instant" must mean no sleep call at all.
    if seconds > 0:
        time.sleep(seconds)


def _symbol(mint: str) -> str:
    token = find_token(mint)
    if token is None:
        return mint
    return "wSOL" if token.native else token.symbol
