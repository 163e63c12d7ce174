"""`order-engine demo` against a running stack: five orders at once, each one's every
state shown as it arrives."""

from __future__ import annotations

import asyncio

import pytest

from local_runtime.runtime import LocalRuntime
from order_engine.orders import HAPPY_PATH
from order_engine_cli import demo
from order_engine_cli.demo import run_demo


def test_the_demo_follows_five_orders_at_once_through_every_state(
    runtime: LocalRuntime, fresh_api_key: str
) -> None:
    # Warm-up runs start the sandboxes five orders at once need. Cold starts come one
    # at a time per function, each with its first clients and connections (seconds on a
    # busy machine, as on Lambda), so the stack takes two rounds to have them all warm;
    # the run measured is the one a user sees then.
    for _ in range(2):
        asyncio.run(run_demo(runtime.http_url, fresh_api_key, count=5, timeout=60))
    rows = asyncio.run(run_demo(runtime.http_url, fresh_api_key, count=5, timeout=60))

    assert len({row.order_id for row in rows}) == 5
    firsts = []
    for row in rows:
        assert row.status in ("confirmed", "failed"), (row.status, row.outcome)
        # One arrival time per state, in the pipeline's order (a failure may end early).
        reached = len(row.timeline)
        assert reached == len(HAPPY_PATH) if row.status == "confirmed" else reached >= 2
        arrivals = [float(t) for t in row.timeline]
        assert arrivals == sorted(arrivals)
        firsts.append(arrivals[0])
        assert row.venue in ("raydium", "meteora")
    # Subscribed by message, the first states show at once, not after the second a
    # handshake subscription waits. That second would delay every order; a sandbox
    # started for one of the five (a busy machine can take a second to start one, as
    # Lambda does) delays only the orders that meet it, so the median tells them apart.
    assert sorted(firsts)[len(firsts) // 2] < 1.0, [row.timeline for row in rows]


def test_the_limit_demo_shows_orders_waiting_then_firing_or_expiring(
    runtime: LocalRuntime, fresh_api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's orders wait 20 s for a user to watch; the orders this test checks fire
    # at once or never, so a shorter wait shows the same.
    monkeypatch.setattr(demo, "LIMIT_WAIT_SECONDS", 8)
    rows = asyncio.run(run_demo(runtime.http_url, fresh_api_key, count=5, timeout=60, limit=True))

    for row in rows:
        assert row.statuses[:2] == ["pending", "watching"], row.statuses
    met_at_once, never_met = rows[0], rows[3]  # SOL >= 140 and SOL >= 400 (demo.py)
    assert met_at_once.statuses[2] == "routing"
    assert met_at_once.outcome and met_at_once.status in ("confirmed", "failed")
    assert never_met.statuses == ["pending", "watching", "expired"]
    assert "not reached" in never_met.outcome
