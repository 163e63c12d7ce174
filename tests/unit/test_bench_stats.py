"""The benchmark's figures: percentiles, time in each status, lost and disordered orders."""

from __future__ import annotations

import math

import pytest

from order_engine.orders import HAPPY_PATH
from order_engine_cli.bench_stats import (
    ObservedEvent,
    OrderTrace,
    parse_at,
    path_problem,
    percentile,
    simulated_work,
    state_durations,
    summarize,
    sustained_per_minute,
)

PATH = tuple(status.value for status in HAPPY_PATH)


def trace(
    sent_at: float,
    statuses: tuple[str, ...] = PATH,
    *,
    gap: float = 1.0,
    lag: float = 0.01,
    seqs: list[int] | None = None,
    snapshot: int = 1,
    order_id: str | None = None,
) -> OrderTrace:
    """An order sent at `sent_at` whose events commit `gap` seconds apart and reach the
    client `lag` later; the first `snapshot` events came in the snapshot."""
    seqs = seqs or list(range(1, len(statuses) + 1))
    events = [
        ObservedEvent(
            seq=seq,
            status=status,
            at=sent_at + 0.1 + i * gap,
            received_at=sent_at + 0.1 + i * gap + lag,
            live=i >= snapshot,
        )
        for i, (seq, status) in enumerate(zip(seqs, statuses, strict=True))
    ]
    return OrderTrace(
        sent_at=sent_at,
        order_id=order_id or f"order-{sent_at}",
        accepted_at=sent_at + 0.05,
        events=events,
    )


class TestPercentile:
    def test_interpolates_between_the_closest_ranks(self) -> None:
        assert percentile([1, 2, 3, 4], 50) == 2.5
        assert percentile([4, 1, 3, 2], 0) == 1
        assert percentile([4, 1, 3, 2], 100) == 4

    def test_p99_of_a_hundred_values_sits_near_the_top(self) -> None:
        assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)

    def test_one_value_is_every_percentile(self) -> None:
        assert percentile([7.0], 99) == 7.0

    def test_no_values_give_nan(self) -> None:
        assert math.isnan(percentile([], 50))

    def test_refuses_a_percentile_outside_0_to_100(self) -> None:
        with pytest.raises(ValueError, match="within 0-100"):
            percentile([1.0], 101)


def test_event_time_is_read_with_its_offset() -> None:
    assert parse_at("2026-01-01T00:00:01.5+00:00") - parse_at("2026-01-01T01:00:00+01:00") == 1.5


def test_time_in_each_status_runs_from_its_event_to_the_next() -> None:
    durations = state_durations(trace(100.0, gap=0.5))
    assert durations == pytest.approx(dict.fromkeys(PATH[:-1], 0.5))


def test_sustained_rate_counts_intervals_between_first_and_last() -> None:
    assert sustained_per_minute([0.0, 1.0, 2.0]) == 60.0
    assert math.isnan(sustained_per_minute([5.0]))


class TestPathProblems:
    def test_a_full_ordered_path_is_fine(self) -> None:
        assert path_problem(trace(0.0)) is None

    def test_a_failure_may_cut_the_path_short(self) -> None:
        assert path_problem(trace(0.0, ("pending", "routing", "failed"))) is None

    def test_a_seq_jump_seen_by_the_stream_is_reported(self) -> None:
        jumped = trace(0.0)
        jumped.seq_jumps.append((2, 4))
        assert path_problem(jumped) == "seq 4 arrived after seq 2"

    def test_a_missing_status_is_reported(self) -> None:
        gap = trace(0.0, ("pending", "routing", "submitted", "confirmed"), seqs=[1, 2, 4, 5])
        assert path_problem(gap) is not None

    def test_statuses_out_of_pipeline_order_are_reported(self) -> None:
        swapped = trace(0.0, ("pending", "building", "routing", "submitted", "confirmed"))
        assert "pipeline order" in str(path_problem(swapped))


class TestSummary:
    def test_counts_latency_lag_and_rate_of_a_clean_run(self) -> None:
        traces = [trace(float(i), gap=0.5, lag=0.02) for i in range(10)]
        figures = summarize(traces, finished_at=20.0)
        assert figures["orders"] == {
            "offered": 10,
            "accepted": 10,
            "rejected": 0,
            "terminal": 10,
            "confirmed": 10,
            "failed": 0,
            "lost": 0,
            "out_of_order_or_gaps": 0,
        }
        # POST at t, first event at t + 0.1, last at t + 0.1 + 4 * 0.5, read 0.02 later.
        assert figures["latency_seconds"]["end_to_end"]["p99"] == pytest.approx(2.12)
        assert figures["latency_seconds"]["accept"]["p50"] == pytest.approx(0.05)
        assert figures["throughput"]["completed_per_minute"] == pytest.approx(60.0)
        assert figures["throughput"]["offered_per_minute"] == pytest.approx(60.0)
        assert figures["state_seconds"]["routing"]["p50"] == pytest.approx(0.5)
        lag = figures["websocket_lag_seconds"]
        assert lag["count"] == 40  # the snapshot's pending events are not deliveries
        assert lag["p99"] == pytest.approx(0.02)

    def test_an_accepted_order_without_a_terminal_status_is_lost(self) -> None:
        stuck = trace(0.0, ("pending", "routing"), order_id="stuck")
        stuck.follow_error = "websocket: ConnectionClosedError"
        figures = summarize([stuck, trace(1.0)], finished_at=70.0)
        assert figures["orders"]["lost"] == 1
        assert figures["lost_orders"] == ["stuck"]
        assert figures["lost_reasons"] == {"websocket: ConnectionClosedError": 1}
        assert figures["latency_seconds"]["end_to_end"]["count"] == 1

    def test_failures_are_counted_by_kind_of_reason(self) -> None:
        failed = [trace(float(i), ("pending", "routing", "failed")) for i in range(3)]
        for i, one in enumerate(failed):
            one.failure_reason = f"slippage exceeded: would receive {i} USDC, minimum 9"
        figures = summarize([*failed, trace(9.0)], finished_at=20.0)
        assert figures["orders"]["failed"] == 3
        assert figures["failure_reasons"] == {"slippage exceeded": 3}

    def test_rejected_posts_are_counted_with_their_answer(self) -> None:
        rejected = OrderTrace(sent_at=0.0, rejected="HTTP 429 rate_limited")
        figures = summarize([rejected, trace(1.0)], finished_at=5.0)
        assert figures["orders"]["rejected"] == 1
        assert figures["rejections"] == {"HTTP 429 rate_limited": 1}

    def test_disordered_orders_are_named(self) -> None:
        bad = trace(0.0, order_id="bad")
        bad.seq_jumps.append((1, 3))
        figures = summarize([bad, trace(1.0)], finished_at=10.0)
        assert figures["orders"]["out_of_order_or_gaps"] == 1
        assert figures["disordered_orders"] == {"bad": "seq 3 arrived after seq 1"}

    def test_drift_compares_the_first_and_last_fifth(self) -> None:
        traces = [trace(float(i), gap=0.1 * (1 + i)) for i in range(10)]
        drift = summarize(traces, finished_at=60.0)["latency_seconds"]["drift"]
        assert drift["last_fifth_p50"] > drift["first_fifth_p50"]

    def test_no_orders_give_empty_figures_not_errors(self) -> None:
        figures = summarize([], finished_at=0.0)
        assert figures["orders"]["offered"] == 0
        assert math.isnan(figures["latency_seconds"]["end_to_end"]["p50"])


def test_simulated_work_is_the_sum_of_the_venue_delays() -> None:
    work = simulated_work((0.1, 0.2), (0.0, 0.0), (0.0, 0.0), (1.0, 1.0))
    assert 1.1 <= work["p50"] <= 1.2
    assert work["p50"] > 1.15  # the slower of two quotes counts
    assert work["max"] <= 1.2


def test_instant_venues_do_no_work() -> None:
    assert simulated_work((0, 0), (0, 0), (0, 0), (0, 0))["p99"] == 0
