"""The router: ask every venue for a quote at once, pick the best net output, explain why.

Native SOL is not an SPL token, so it routes as wrapped SOL: quotes use the tokens'
pool mints (wSOL for SOL), and the decision says whether the transaction must wrap SOL
before the swap (SOL in) or unwrap it after (SOL out); build turns that into
instructions.

How failures map onto the one error hierarchy, so the route step knows what to do:
- some venues fail, one quotes: use it, and record why the others were not used;
- every venue fails, at least one transiently: VenueTimeout / VenueUnavailable (retry);
- no venue has a pool for the pair: NoRoute (fail the order now);
- the best quote's price impact alone exceeds the tolerance: SlippageExceeded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any

from order_engine.dex.venue import Quote, Venue, round_down
from order_engine.errors import (
    NoRoute,
    OrderEngineError,
    SlippageExceeded,
    StepError,
    VenueTimeout,
    VenueUnavailable,
)
from order_engine.tokens import Token

log = logging.getLogger(__name__)

# Routes quoting at once before a quote waits for a thread (it was 4: at 1,000 orders
# a minute, quotes queued behind each other until both venues "timed out").
MAX_CONCURRENT_ROUTES = 64


@dataclass(frozen=True)
class QuoteOutcome:
    """What one venue answered: a quote, or why not."""

    venue: str
    quote: Quote | None
    error: str | None
    # The error's class code from errors.py ("venue_timeout", "venue_unavailable",
    # "no_route"), or "venue_error" for anything unexpected; None with a quote.
    error_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "venue": self.venue,
            "quote": None if self.quote is None else self.quote.to_dict(),
            "error": self.error,
            "error_code": self.error_code,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuoteOutcome:
        quote = d.get("quote")
        return cls(
            venue=d["venue"],
            quote=None if quote is None else Quote.from_dict(quote),
            error=d.get("error"),
            error_code=d.get("error_code"),
        )


@dataclass(frozen=True)
class RouteDecision:
    venue: str
    quote: Quote
    # Every venue's answer, in the router's venue order.
    quotes: tuple[QuoteOutcome, ...]
    # For people: "meteora returns 3.1 % more USDC after fees (0.30 % vs 0.25 %)".
    reason: str
    token_in: str  # symbols, as the user named them (SOL, not wSOL)
    token_out: str
    wrap_sol: bool
    unwrap_sol: bool
    min_amount_out: Decimal
    slippage_bps: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "venue": self.venue,
            "quote": self.quote.to_dict(),
            "quotes": [outcome.to_dict() for outcome in self.quotes],
            "reason": self.reason,
            "token_in": self.token_in,
            "token_out": self.token_out,
            "wrap_sol": self.wrap_sol,
            "unwrap_sol": self.unwrap_sol,
            "min_amount_out": format(self.min_amount_out, "f"),
            "slippage_bps": self.slippage_bps,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RouteDecision:
        return cls(
            venue=d["venue"],
            quote=Quote.from_dict(d["quote"]),
            quotes=tuple(QuoteOutcome.from_dict(outcome) for outcome in d["quotes"]),
            reason=d["reason"],
            token_in=d["token_in"],
            token_out=d["token_out"],
            wrap_sol=bool(d["wrap_sol"]),
            unwrap_sol=bool(d["unwrap_sol"]),
            min_amount_out=Decimal(d["min_amount_out"]),
            slippage_bps=int(d["slippage_bps"]),
        )


class Router:
    def __init__(self, venues: Sequence[Venue], *, quote_timeout: float) -> None:
        if not venues:
            raise ValueError("a router needs at least one venue")
        self._venues: dict[str, Venue] = {venue.name: venue for venue in venues}
        if len(self._venues) != len(venues):
            raise ValueError("venue names must be unique")
        self._quote_timeout = quote_timeout
        # One executor for the router's life (a Lambda container reuses it across
        # invocations), shared by every route running in the process: the records of a
        # batch run at once, and the local runtime runs all invocations in one process.
        # A quote waiting for a thread eats into its timeout, so there is a thread for
        # each venue of MAX_CONCURRENT_ROUTES routes; threads start only when needed.
        self._executor = ThreadPoolExecutor(
            max_workers=MAX_CONCURRENT_ROUTES * len(self._venues),
            thread_name_prefix="router-quote",
        )

    def venue(self, name: str) -> Venue:
        try:
            return self._venues[name]
        except KeyError:
            raise KeyError(f"no venue named {name!r} (have {sorted(self._venues)})") from None

    def route(
        self, token_in: Token, token_out: Token, amount: Decimal, slippage_bps: int
    ) -> RouteDecision:
        pair = f"{token_in.symbol}/{token_out.symbol}"
        if token_in.pool_mint == token_out.pool_mint:
            raise NoRoute(f"{pair}: cannot swap a token for itself")
        outcomes = self._quote_all(token_in.pool_mint, token_out.pool_mint, amount)
        quotes = [outcome.quote for outcome in outcomes if outcome.quote is not None]
        if not quotes:
            raise _no_quote_error(outcomes, pair)
        # max() keeps the first of equals, so ties go to the earlier venue: stable.
        best = max(quotes, key=lambda quote: quote.amount_out)
        if best.price_impact_bps > slippage_bps:
            raise SlippageExceeded(
                f"price impact of {best.price_impact_bps} bps on {best.venue} exceeds the "
                f"slippage tolerance of {slippage_bps} bps; try a smaller amount"
            )
        min_amount_out = round_down(
            best.amount_out * (10_000 - slippage_bps) / 10_000, token_out.decimals
        )
        if min_amount_out <= 0:
            raise NoRoute(f"{amount} {token_in.symbol} is too small to buy any {token_out.symbol}")
        return RouteDecision(
            venue=best.venue,
            quote=best,
            quotes=tuple(outcomes),
            reason=_explain(best, outcomes, token_out.symbol, pair),
            token_in=token_in.symbol,
            token_out=token_out.symbol,
            wrap_sol=token_in.native,
            unwrap_sol=token_out.native,
            min_amount_out=min_amount_out,
            slippage_bps=slippage_bps,
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Router:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _quote_all(self, input_mint: str, output_mint: str, amount: Decimal) -> list[QuoteOutcome]:
        """Every venue's answer, asked concurrently, waiting at most quote_timeout."""
        futures: dict[str, Future[Quote]] = {
            name: self._executor.submit(venue.quote, input_mint, output_mint, amount)
            for name, venue in self._venues.items()
        }
        # All were asked at the same moment, so one deadline is "at most the timeout each".
        wait(futures.values(), timeout=self._quote_timeout)
        outcomes = []
        for name, future in futures.items():
            if not future.done():
                future.cancel()  # a no-op once running; the late answer is ignored
                error = f"no quote within {self._quote_timeout:g} s"
                outcomes.append(QuoteOutcome(name, None, error, VenueTimeout.code))
                continue
            exc = future.exception()
            if exc is None:
                outcomes.append(QuoteOutcome(name, future.result(), None))
            elif isinstance(exc, OrderEngineError):
                error = exc.reason if isinstance(exc, StepError) else str(exc)
                outcomes.append(QuoteOutcome(name, None, error, exc.code))
            else:
                # A real adapter's network stack raises its own exceptions: treat them as
                # the venue being unavailable, but keep the traceback for whoever debugs it.
                log.warning("unexpected error from %s quote", name, exc_info=exc)
                error = f"{type(exc).__name__}: {exc}"
                outcomes.append(QuoteOutcome(name, None, error, "venue_error"))
        return outcomes


def _no_quote_error(outcomes: Sequence[QuoteOutcome], pair: str) -> Exception:
    if all(outcome.error_code == NoRoute.code for outcome in outcomes):
        return NoRoute(f"no venue has a pool for {pair}")
    summary = "; ".join(_failure(outcome, pair) for outcome in outcomes)
    failed = [outcome for outcome in outcomes if outcome.error_code != NoRoute.code]
    # VenueTimeout only when every venue that might have quoted timed out.
    if all(outcome.error_code == VenueTimeout.code for outcome in failed):
        return VenueTimeout(f"no quote for {pair}: {summary}")
    return VenueUnavailable(f"no quote for {pair}: {summary}")


def _explain(best: Quote, outcomes: Sequence[QuoteOutcome], symbol_out: str, pair: str) -> str:
    """Why `best` won, in one line a person can check against the quotes."""
    rivals = sorted(
        (o.quote for o in outcomes if o.quote is not None and o.venue != best.venue),
        key=lambda quote: quote.amount_out,
        reverse=True,
    )
    failures = [_failure(o, pair) for o in outcomes if o.quote is None]
    if rivals:
        runner = rivals[0]
        fees = f"({_pct(best.fee_bps)} vs {_pct(runner.fee_bps)})"
        if runner.amount_out == best.amount_out:
            parts = [f"{best.venue} and {runner.venue} return the same {symbol_out} after fees"]
        elif runner.amount_out <= 0:
            parts = [f"{best.venue} returns more {symbol_out} after fees {fees}"]
        else:
            gain = (best.amount_out / runner.amount_out - 1) * 100
            shown = f"{gain:.1f}" if gain >= Decimal("0.1") else f"{gain:.2g}"
            parts = [f"{best.venue} returns {shown} % more {symbol_out} after fees {fees}"]
        if runner.amount_out + runner.fee_amount > best.amount_out + best.fee_amount:
            parts.append(f"{runner.venue} quoted more before fees")
        return "; ".join(parts + failures)
    if failures:
        return "; ".join([*failures, f"{best.venue} was the only quote"])
    return f"{best.venue} is the only venue"


def _failure(outcome: QuoteOutcome, pair: str) -> str:
    if outcome.error_code == VenueTimeout.code:
        return f"{outcome.venue} timed out"
    if outcome.error_code == NoRoute.code:
        return f"{outcome.venue} has no {pair} pool"
    if outcome.error_code == VenueUnavailable.code:
        return f"{outcome.venue} was unavailable"
    return f"{outcome.venue} failed ({outcome.error})"


def _pct(bps: int) -> str:
    return f"{bps / 100:.2f} %"
