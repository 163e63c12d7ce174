"""What `order-engine bench` prints of the stack's CPU: per order, as issue targets say it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from order_engine_cli.bench_report import add_cpu_per_order, render
from order_engine_cli.bench_sampling import machine, reference_cpu_ms

REPORT = Path(__file__).parents[2] / "docs/benchmarks/2026-12-04b/burst600-c100.json"


def report_without_per_order() -> dict[str, Any]:
    report = json.loads(REPORT.read_text())
    report["resources"].pop("cpu_ms_per_order", None)
    return report


def printed(report: dict[str, Any]) -> str:
    console = Console(width=200, record=True)
    console.print(render(report))
    return console.export_text()


def test_the_bench_prints_the_whole_stacks_cpu_per_order_that_ended() -> None:
    report = report_without_per_order()
    add_cpu_per_order(report)
    resources = report["resources"]
    ended = report["results"]["orders"]["terminal"]
    expected = (resources["stack"]["cpu_seconds"] + resources["postgres"]["cpu_seconds"]) * 1000
    per_order = resources["cpu_ms_per_order"]
    assert abs(per_order["all"] - expected / ended) < 0.01
    assert set(per_order["by_process"]) >= {"up", "sandboxes", "ministack", "postgres"}
    assert abs(sum(per_order["by_process"].values()) - per_order["all"]) < 0.01
    table = printed(report)
    assert "CPU per order (ms)" in table
    assert f"{per_order['all']:.1f} in all" in table


def test_no_figure_per_order_without_a_sampled_stack() -> None:
    report = report_without_per_order()
    del report["resources"]["stack"]
    add_cpu_per_order(report)
    assert "cpu_ms_per_order" not in report["resources"]
    assert "CPU per order" not in printed(report)


def test_the_bench_records_and_prints_how_fast_the_machine_ran_python() -> None:
    """A run's CPU per order is only comparable with another's at a like machine speed:
    each run records the CPU of a fixed reference work before and after it."""
    first = reference_cpu_ms(rounds=3)
    assert 0 < first < 5_000
    # The same work in the same minute costs about the same: a figure to compare by.
    assert 0.5 < reference_cpu_ms(rounds=3) / first < 2
    report = report_without_per_order()
    report["machine"] = machine((0.5, 0.4, 0.3), first)
    assert report["machine"]["reference_cpu_ms_before"] == first
    assert report["machine"]["reference_cpu_ms_after"] > 0
    assert f"the reference work took {first} ms of CPU before the run" in printed(report)
