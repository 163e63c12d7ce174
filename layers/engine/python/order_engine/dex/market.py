"""The simulated market behind both venues: reference prices, pools, and the swap maths.

One `Market` is shared by the simulated Raydium and Meteora so their prices relate the
way real venues' do: both track the same reference price, and for a pair both list, the
two pools sit 2.9-4.1 % apart (which venue is better is seeded per pair and, since a
better price one way is a worse price the other way, per direction). Together with the
fees and a tick of noise per quote, that keeps the two venues' quotes 2-5 % apart before
and after fees, for orders that are small against the pools (up to a few hundred USD in
the thinnest pools); bigger orders diverge further, because the pools differ in depth.

Pools are constant-product (x * y = k), so bigger orders get worse prices. They are
stateless: our own swaps do not move reserves. That is deliberate: every Lambda
container builds the same market from the same seed, and none of them could see
another's swaps anyway.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal

from order_engine.dex.price_path import FLAT, PricePath, now
from order_engine.dex.venue import Quote, round_down
from order_engine.errors import NoRoute
from order_engine.tokens import Token, find_token, get_token

RAYDIUM = "raydium"
METEORA = "meteora"

# USD reference prices; the market adds up to +/-1 % of seeded noise to each.
REFERENCE_USD: dict[str, Decimal] = {
    "SOL": Decimal("150"),
    "USDC": Decimal("1"),
    "USDT": Decimal("1"),
    "BONK": Decimal("0.00002"),
    "JUP": Decimal("0.9"),
    "RAY": Decimal("2.5"),
}

# Which pools each venue lists. RAY trades on Raydium only, JUP/USDT on Meteora only,
# and some pairs (BONK/JUP, JUP/RAY, ...) nowhere, so routing meets every case.
VENUE_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    RAYDIUM: (
        ("SOL", "USDC"), ("SOL", "USDT"), ("USDC", "USDT"), ("BONK", "SOL"), ("BONK", "USDC"),
        ("JUP", "SOL"), ("JUP", "USDC"), ("RAY", "SOL"), ("RAY", "USDC"), ("RAY", "USDT"),
    ),
    METEORA: (
        ("SOL", "USDC"), ("SOL", "USDT"), ("USDC", "USDT"), ("BONK", "SOL"), ("BONK", "USDC"),
        ("JUP", "SOL"), ("JUP", "USDC"), ("JUP", "USDT"),
    ),
}  # fmt: skip

RAYDIUM_FEE_BPS = 25
# Meteora's dynamic pools each set their own fee; seeded per pair in this range.
METEORA_FEE_BPS = (10, 80)
# Relative gap between the two venues' pool prices for a pair both list.
SPREAD_RANGE = (0.029, 0.041)
# Per-quote price noise (the market ticks between quotes), +/- this fraction.
TICK = 0.001
_MAJORS = frozenset({"SOL", "USDC", "USDT"})
# Pool depth in USD (both sides together), log-uniform in these ranges.
MAJOR_TVL_USD = (5_000_000, 40_000_000)
MINOR_TVL_USD = (500_000, 5_000_000)

_PRICE_CONTEXT = Context(prec=12)


@dataclass(frozen=True)
class Pool:
    """One venue's constant-product pool; reserves in UI units of each token."""

    venue: str
    base: Token
    quote: Token
    base_reserve: Decimal
    quote_reserve: Decimal
    fee_bps: int

    @property
    def mints(self) -> frozenset[str]:
        return frozenset({self.base.pool_mint, self.quote.pool_mint})


class Market:
    """The pools of every venue, and the maths of a quote against them."""

    def __init__(self, pools: Iterable[Pool], path: PricePath = FLAT) -> None:
        # Moves every pool's price over time, the same for both venues of a pair.
        self.path = path
        self._pools: dict[tuple[str, frozenset[str]], Pool] = {}
        for pool in pools:
            self._pools[(pool.venue, pool.mints)] = pool

    @classmethod
    def generate(cls, seed: int, path: PricePath = FLAT) -> Market:
        """The default market for `seed`: same seed, same prices, fees and depths."""
        rng = random.Random(f"market:{seed}")
        usd = {
            symbol: price * _dec(1 + rng.uniform(-0.01, 0.01))
            for symbol, price in REFERENCE_USD.items()
        }
        pairs = sorted({pair for pairs in VENUE_PAIRS.values() for pair in pairs})
        pools = []
        for base, quote in pairs:
            venues = [venue for venue, listed in VENUE_PAIRS.items() if (base, quote) in listed]
            # Both venues' prices sit on either side of a common centre, their ratio
            # exactly 1 + spread; which side is richer is a coin flip.
            centre = _dec(1 + rng.uniform(-0.003, 0.003))
            half = _dec(1 + rng.uniform(*SPREAD_RANGE)).sqrt()
            richer = rng.choice(venues)
            majors = {base, quote} <= _MAJORS
            for venue in venues:
                factor = centre if len(venues) == 1 else centre * half
                if len(venues) > 1 and venue != richer:
                    factor = centre / half
                low, high = MAJOR_TVL_USD if majors else MINOR_TVL_USD
                tvl = _dec(math.exp(rng.uniform(math.log(low), math.log(high))))
                base_reserve = tvl / 2 / usd[base]
                quote_reserve = base_reserve * usd[base] / usd[quote] * factor
                fee = RAYDIUM_FEE_BPS if venue == RAYDIUM else rng.randint(*METEORA_FEE_BPS)
                pools.append(
                    Pool(
                        venue=venue,
                        base=get_token(base),
                        quote=get_token(quote),
                        base_reserve=base_reserve,
                        quote_reserve=quote_reserve,
                        fee_bps=fee,
                    )
                )
        return cls(pools, path)

    def pool(self, venue: str, mint_a: str, mint_b: str) -> Pool | None:
        return self._pools.get((venue, frozenset({mint_a, mint_b})))

    def quote(
        self,
        venue: str,
        input_mint: str,
        output_mint: str,
        amount_in: Decimal,
        *,
        tick: Decimal = Decimal(0),
    ) -> Quote:
        """What `venue`'s pool pays for `amount_in`, with the price nudged by `tick`
        (a fraction, e.g. 0.0004: the market moved between quotes)."""
        if amount_in <= 0:
            raise ValueError(f"amount_in must be positive, got {amount_in}")
        pool = self.pool(venue, input_mint, output_mint) if input_mint != output_mint else None
        if pool is None:
            raise NoRoute(f"{venue} has no pool for {_symbol(input_mint)}/{_symbol(output_mint)}")
        moved = self.path.factor(pool.base.symbol, pool.quote.symbol, now())
        if pool.base.pool_mint == input_mint:
            reserve_in, reserve_out, token_out = pool.base_reserve, pool.quote_reserve, pool.quote
            reserve_out *= moved
        else:
            reserve_in, reserve_out, token_out = pool.quote_reserve, pool.base_reserve, pool.base
            reserve_out /= moved
        reserve_out *= 1 + tick
        # Constant product: the pool keeps x * y fixed, so the output falls short of the
        # mid-price output by the fraction amount_in / (reserve_in + amount_in).
        gross = reserve_out * amount_in / (reserve_in + amount_in)
        impact = amount_in / (reserve_in + amount_in)
        fee = gross * pool.fee_bps / 10_000
        amount_out = round_down(gross - fee, token_out.decimals)
        return Quote(
            venue=venue,
            input_mint=input_mint,
            output_mint=output_mint,
            amount_in=amount_in,
            amount_out=amount_out,
            fee_bps=pool.fee_bps,
            fee_amount=fee.quantize(Decimal(1).scaleb(-token_out.decimals), ROUND_HALF_UP),
            price=_PRICE_CONTEXT.divide(amount_out, amount_in),
            price_impact_bps=int((impact * 10_000).to_integral_value(ROUND_HALF_UP)),
        )


def _dec(value: float) -> Decimal:
    # Through repr, so 1.0123 becomes Decimal("1.0123"), not its binary expansion.
    return Decimal(repr(value))


def _symbol(mint: str) -> str:
    token = find_token(mint)
    return token.symbol if token else mint
