"""The benchmark's figures, from what the client saw: pure functions, no I/O.

`bench_load` fills one `OrderTrace` per order (when it was POSTed, what the API
answered, every status the WebSocket delivered and when); `summarize` turns them into
the figures `order-engine bench` prints and writes as JSON. Times are wall-clock
seconds since the epoch (`time.time()`), because the events' `at` comes from
PostgreSQL's clock and the WebSocket lag compares the two; client and stack run on
one machine, so they share that clock.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from order_engine import orders

# The statuses as the client sees them: plain strings, from the engine's own table.
HAPPY_PATH = tuple(status.value for status in orders.HAPPY_PATH)
TERMINAL = frozenset(status.value for status in orders.TERMINAL)
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class ObservedEvent:
    """One status as the client received it (duplicates already dropped)."""

    seq: int
    status: str
    at: float  # when the transition committed (the event's `at`, PostgreSQL's clock)
    received_at: float  # when the client read it
    live: bool  # True: pushed as it happened; False: part of the subscription snapshot


@dataclass
class OrderTrace:
    """Everything the client learnt about one order."""

    sent_at: float  # just before the POST
    order_id: str | None = None
    accepted_at: float | None = None  # the 202 arrived
    rejected: str | None = None  # why the POST failed, if it did
    follow_error: str | None = None  # why the WebSocket stopped early, if it did
    events: list[ObservedEvent] = field(default_factory=list)
    # seq jumps the client saw, as (previous seq, received seq): a gap or an inversion.
    seq_jumps: list[tuple[int, int]] = field(default_factory=list)
    failure_reason: str | None = None  # the `failed` event's reason

    @property
    def status(self) -> str | None:
        return self.events[-1].status if self.events else None

    @property
    def terminal_at(self) -> float | None:
        """When the client learnt the final status; None while it has not."""
        last = self.events[-1] if self.events else None
        return last.received_at if last is not None and last.status in TERMINAL else None

    @property
    def accepted(self) -> bool:
        return self.order_id is not None


def parse_at(value: str) -> float:
    """An event's ISO 8601 `at` as epoch seconds."""
    return datetime.fromisoformat(value).timestamp()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated linearly between the closest ranks
    (numpy's default), so p50 of [1, 2, 3, 4] is 2.5. NaN for no values."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: Sequence[float]) -> dict[str, float | int]:
    """count, mean, p50/p90/p99 and max, in the values' unit."""
    summary: dict[str, float | int] = {"count": len(values)}
    summary["mean"] = sum(values) / len(values) if values else math.nan
    for q in PERCENTILES:
        summary[f"p{q}"] = percentile(values, q)
    summary["max"] = max(values) if values else math.nan
    return summary


def path_problem(trace: OrderTrace) -> str | None:
    """Why the statuses this order's client saw are not a complete, ordered path from
    `pending` (1, 2, 3 … in seq; the happy path, possibly cut short by `failed`), or
    None when they are. Only meaningful for a terminal order."""
    if trace.seq_jumps:
        previous, got = trace.seq_jumps[0]
        return f"seq {got} arrived after seq {previous}"
    seqs = [event.seq for event in trace.events]
    if seqs != list(range(1, len(seqs) + 1)):
        return f"seqs {seqs} are not 1, 2, 3 …"
    statuses = [event.status for event in trace.events]
    body = statuses[:-1] if statuses and statuses[-1] == "failed" else statuses
    if tuple(body) != HAPPY_PATH[: len(body)]:
        return f"statuses {statuses} are not in pipeline order"
    if statuses and statuses[-1] == HAPPY_PATH[-1] and len(statuses) != len(HAPPY_PATH):
        return f"statuses {statuses} miss some of the pipeline"
    return None


def state_durations(trace: OrderTrace) -> dict[str, float]:
    """Seconds the order spent in each status, from one event's `at` to the next's."""
    durations: dict[str, float] = {}
    for current, following in zip(trace.events, trace.events[1:], strict=False):
        durations[current.status] = following.at - current.at
    return durations


def sustained_per_minute(times: Sequence[float]) -> float:
    """Events per minute between the first and the last of `times` (n - 1 intervals);
    NaN when fewer than two."""
    if len(times) < 2:
        return math.nan
    span = max(times) - min(times)
    return (len(times) - 1) / span * 60 if span > 0 else math.nan


def summarize(traces: Sequence[OrderTrace], *, finished_at: float) -> dict[str, Any]:
    """The benchmark's figures. `finished_at`: when the client stopped waiting; an
    accepted order without a terminal status by then is *lost*."""
    accepted = [t for t in traces if t.accepted]
    done = [t for t in accepted if t.terminal_at is not None]
    lost = [t for t in accepted if t.terminal_at is None]
    failed = [t for t in done if t.status == "failed"]
    sent = [t.sent_at for t in traces]
    terminal_times = [t.terminal_at for t in done if t.terminal_at is not None]
    e2e = [t.terminal_at - t.sent_at for t in done if t.terminal_at is not None]
    # Live events only: a snapshot replays the past, its age says nothing about delivery.
    lag = [e.received_at - e.at for t in accepted for e in t.events if e.live]
    accept = [t.accepted_at - t.sent_at for t in accepted if t.accepted_at is not None]
    by_state: dict[str, list[float]] = {}
    for trace in done:
        for status, seconds in state_durations(trace).items():
            by_state.setdefault(status, []).append(seconds)
    disordered = {t.order_id: p for t in done if (p := path_problem(t)) is not None}
    return {
        "orders": {
            "offered": len(traces),
            "accepted": len(accepted),
            "rejected": len(traces) - len(accepted),
            "terminal": len(done),
            "confirmed": sum(t.status == "confirmed" for t in done),
            "failed": len(failed),
            "lost": len(lost),
            "out_of_order_or_gaps": len(disordered),
        },
        "throughput": {
            "offered_per_minute": sustained_per_minute(sent),
            "completed_per_minute": sustained_per_minute(terminal_times),
            "wall_seconds": (finished_at - min(sent)) if sent else 0.0,
        },
        "latency_seconds": {
            "end_to_end": distribution(e2e),
            "accept": distribution(accept),
            "drift": latency_drift(done),
        },
        "state_seconds": {
            status: distribution(by_state[status]) for status in HAPPY_PATH if status in by_state
        },
        "websocket_lag_seconds": distribution(lag),
        "rejections": _count(t.rejected or "?" for t in traces if not t.accepted),
        "failure_reasons": _count(_reason_kind(t.failure_reason) for t in failed),
        "lost_reasons": _count(t.follow_error or "no terminal status in time" for t in lost),
        "lost_orders": sorted(t.order_id for t in lost if t.order_id),
        "disordered_orders": dict(sorted((k, v) for k, v in disordered.items() if k)),
    }


def latency_drift(done: Sequence[OrderTrace]) -> dict[str, float]:
    """p50 end-to-end latency of the first and the last fifth of the orders, by send
    time: a stack that keeps up shows the same figure at both ends, one that falls
    behind (a growing backlog) a rising one, whatever the overall percentiles say."""
    ordered = sorted(
        (t.sent_at, t.terminal_at - t.sent_at) for t in done if t.terminal_at is not None
    )
    fifth = len(ordered) // 5
    if fifth == 0:
        return {"first_fifth_p50": math.nan, "last_fifth_p50": math.nan}
    return {
        "first_fifth_p50": percentile([latency for _, latency in ordered[:fifth]], 50),
        "last_fifth_p50": percentile([latency for _, latency in ordered[-fifth:]], 50),
    }


def simulated_work(
    quote: tuple[float, float],
    build: tuple[float, float],
    submit: tuple[float, float],
    confirm: tuple[float, float],
    *,
    samples: int = 20_000,
    seed: int = 1,
) -> dict[str, float | int]:
    """The distribution of the time the simulated venues alone take per order, the
    floor under any end-to-end latency: both quotes at once (the slower counts), then
    build, submit, and the confirmation `confirm` seconds after submission, each drawn
    uniformly from its range as the simulation does. Monte Carlo, seeded."""
    draw = random.Random(seed).uniform
    return distribution(
        [
            max(draw(*quote), draw(*quote)) + draw(*build) + draw(*submit) + draw(*confirm)
            for _ in range(samples)
        ]
    )


def _reason_kind(reason: str | None) -> str:
    """A failure reason without its particulars (amounts, counts), so that alike
    failures are counted together: "slippage exceeded: would receive 1.2 …" ->
    "slippage exceeded"."""
    if not reason:
        return "?"
    return reason.split(":", 1)[0].split(" (", 1)[0].strip()


def _count(reasons: Iterable[str]) -> dict[str, int]:
    return dict(Counter(reasons).most_common())
