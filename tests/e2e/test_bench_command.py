"""`order-engine bench` against a running stack: a tiny run that must produce figures.

Not a timed test: it checks that the command drives real orders over HTTP and
WebSocket and accounts for every one of them, whatever the speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from local_runtime.runtime import LocalRuntime
from order_engine_cli.bench import bench


@pytest.mark.parametrize("sockets", ["0", "2"], ids=["a-socket-per-order", "shared-sockets"])
def test_a_small_bench_run_follows_every_order_to_its_end_and_writes_figures(
    runtime: LocalRuntime, fresh_api_key: str, tmp_path: Path, sockets: str
) -> None:
    report_path = tmp_path / "bench.json"
    result = CliRunner().invoke(
        bench,
        [
            "--api",
            runtime.http_url,
            "--api-key",
            fresh_api_key,
            "--orders",
            "5",
            "--concurrency",
            "5",
            "--sockets",
            sockets,
            "--deadline",
            "60",
            "--json",
            str(report_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "orders per minute" in result.output
    figures = json.loads(report_path.read_text())["results"]
    counts = figures["orders"]
    assert counts["accepted"] == 5
    assert counts["terminal"] == 5 and counts["lost"] == 0, figures
    assert counts["out_of_order_or_gaps"] == 0, figures["disordered_orders"]
    assert figures["latency_seconds"]["end_to_end"]["count"] == 5
    assert figures["latency_seconds"]["end_to_end"]["p50"] > 0


def test_a_key_the_stack_refuses_stops_the_run_before_any_order_with_a_clear_error(
    runtime: LocalRuntime,
) -> None:
    result = CliRunner().invoke(
        bench, ["--api", runtime.http_url, "--api-key", "oe_live_nope_x", "--orders", "5"]
    )

    assert result.exit_code == 1
    assert "the stack refused the request (HTTP 401" in result.output
    assert "it sent the key given" in result.output
    assert "--api-key" in result.output
    assert "orders per minute" not in result.output  # no load ran
