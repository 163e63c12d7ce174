"""How the simulated market's prices move over time: one factor per pair and moment.

A pool's price is its reserves' ratio times `factor(base, quote, at)`. The factor is a
function of the seed, the pair and the time alone, never of a process's history, so
every Lambda container (and every process of the local runtime) sees the same price
at the same second, as every client of a real venue does.

- `SeededWalk`: a mean-reverting random walk (an Ornstein-Uhlenbeck process sampled
  once a second) per pair, so limits are met and missed as they would be: over a
  minute a price wanders about 1 %, and it never drifts off for good.
- `ScriptedPath`: a price path set by a test, a step function of wall-clock time per
  pair; pairs it does not name stay at factor 1.
- `FLAT`: no movement at all (the unit tests' fixed prices).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol


class PricePath(Protocol):
    def factor(self, base: str, quote: str, at: float) -> Decimal:
        """The multiplier of the base token's price in the quote token at `at` (Unix s)."""
        ...


@dataclass(frozen=True)
class Flat:
    def factor(self, base: str, quote: str, at: float) -> Decimal:
        return Decimal(1)


FLAT = Flat()

# Per second: the pull back to the pool's own price, and the size of a step. The
# walk's spread settles at STEP_SD / sqrt(2 * REVERSION), about 1 %.
REVERSION = 0.02
STEP_SD = 0.002
# Steps older than this weigh less than (1 - REVERSION) ** 300 = 0.2 % and are left out.
MEMORY_STEPS = 300


@dataclass
class SeededWalk:
    """The level at second k is sum over j < MEMORY_STEPS of (1 - REVERSION) ** j times
    the shock of second k - j, summed in that order from scratch: the same float in
    every process, whatever each computed before. Shocks are drawn once and kept."""

    seed: int
    _shocks: dict[tuple[str, str, int], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def factor(self, base: str, quote: str, at: float) -> Decimal:
        step = int(at)
        with self._lock:
            if len(self._shocks) > 20 * MEMORY_STEPS:
                self._shocks.clear()  # a bound, not a cache policy: old seconds are done
            level = 0.0
            for lag in range(MEMORY_STEPS):
                level += _DECAY[lag] * self._shock(base, quote, step - lag)
        return Decimal(repr(round(math.exp(STEP_SD * level), 9)))

    def _shock(self, base: str, quote: str, step: int) -> float:
        key = (base, quote, step)
        shock = self._shocks.get(key)
        if shock is None:
            # A stream per pair and second: every process draws the very same shock.
            shock = random.Random(f"walk:{self.seed}:{base}/{quote}:{step}").gauss(0.0, 1.0)
            self._shocks[key] = shock
        return shock


_DECAY = [(1 - REVERSION) ** lag for lag in range(MEMORY_STEPS)]


@dataclass(frozen=True)
class ScriptedPath:
    """Per pair "BASE/QUOTE", the factor from each given time on: ((at, factor), ...)."""

    points: Mapping[str, Sequence[tuple[float, Decimal]]]

    def factor(self, base: str, quote: str, at: float) -> Decimal:
        current = Decimal(1)
        for since, value in sorted(self.points.get(f"{base}/{quote}", ())):
            if since <= at:
                current = value
        return current

    @classmethod
    def from_json(cls, text: str) -> ScriptedPath:
        """{"SOL/USDC": [[unix_seconds, factor], ...], ...} (the DEX_PRICE_PATH setting)."""
        data = json.loads(text, parse_float=Decimal)
        return cls(
            {
                pair: tuple((float(at), Decimal(str(value))) for at, value in points)
                for pair, points in data.items()
            }
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                pair: [[at, str(value)] for at, value in points]
                for pair, points in self.points.items()
            }
        )


def now() -> float:
    return time.time()
