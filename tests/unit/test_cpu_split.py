"""What `order-engine lab cpu-split` reports from the totals its stack's processes wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from rich.console import Console

from order_engine_cli.bench_report import render
from order_engine_cli.cpu_split import AWS, DATABASE, difference, stack_environment
from order_engine_cli.main import cli

BENCH_REPORT = "docs/benchmarks/2026-12-04b/burst600-c100.json"  # any report, to print


def totals(cpu: float, aws: dict[str, tuple[float, int]], db: dict[str, tuple[float, int]]) -> Any:
    return {
        "process_cpu_seconds": cpu,
        "seconds": {
            AWS: {k: s for k, (s, _) in aws.items()},
            DATABASE: {k: s for k, (s, _) in db.items()},
        },
        "calls": {
            AWS: {k: n for k, (_, n) in aws.items()},
            DATABASE: {k: n for k, (_, n) in db.items()},
        },
    }


def test_only_what_was_spent_during_the_load_counts_per_order_and_per_kind_of_process() -> None:
    before = {
        1: totals(2.0, {"SendMessageBatch": (0.5, 100)}, {"statement": (0.2, 1000)}),
        2: totals(1.0, {}, {}),
    }
    after = {
        1: totals(4.0, {"SendMessageBatch": (1.5, 600)}, {"statement": (0.7, 3000)}),
        2: totals(2.0, {"ReceiveMessage": (0.3, 200)}, {}),
        3: totals(1.0, {"ReceiveMessage": (0.1, 100)}, {}),  # started during the load
    }
    split = difference(before, after, {1: "root", 2: "workers", 3: "workers"}, per=100)

    up = split["root"]
    assert up["processes"] == 1
    assert up["cpu_ms_per_order"] == 20.0  # 2 s over 100 orders
    assert up[AWS]["by_call"]["SendMessageBatch"] == {
        "ms_per_order": 10.0,
        "calls_per_order": 5.0,
        "ms_per_call": 2.0,
    }
    assert up[DATABASE]["ms_per_order"] == 5.0
    assert up["rest_ms_per_order"] == 5.0

    workers = split["workers"]
    assert workers["processes"] == 2
    assert workers["cpu_ms_per_order"] == 20.0
    assert workers[AWS]["by_call"]["ReceiveMessage"]["calls_per_order"] == 3.0
    assert workers[AWS]["ms_per_order"] == 4.0
    assert workers[DATABASE] == {"ms_per_order": 0.0, "by_call": {}}
    assert workers["rest_ms_per_order"] == 16.0


def test_a_process_of_unknown_kind_is_still_counted() -> None:
    split = difference({}, {7: totals(0.5, {}, {})}, {}, per=10)
    assert split["?"]["cpu_ms_per_order"] == 50.0


def test_the_site_folder_goes_first_on_the_stacks_path_and_keeps_the_callers() -> None:
    env = stack_environment(Path("/tmp/x"), {"PYTHONPATH": "/a"})
    first, rest = env["PYTHONPATH"].split(":", 1)
    assert first.endswith("cpu_split_site") and rest == "/a"
    assert env["ORDER_ENGINE_CPU_SPLIT_DIR"] == "/tmp/x"


def test_the_split_of_a_stack_the_bench_did_not_start_is_refused_before_anything_runs() -> None:
    result = CliRunner().invoke(cli, ["lab", "cpu-split", "--api", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "the CPU split needs a stack the bench starts" in result.output


def test_the_splits_own_writer_is_counted_apart_from_the_rest() -> None:
    before = {4: {**totals(1.0, {}, {}), "writer_seconds": 0.1}}
    after = {
        4: {**totals(2.0, {"PostToConnection": (0.3, 50)}, {}), "writer_seconds": 0.2},
        5: {**totals(0.5, {}, {}), "writer_seconds": 0.05},  # forked during the load
    }
    sandboxes = difference(before, after, {4: "sandboxes", 5: "sandboxes"}, per=10)["sandboxes"]
    assert sandboxes["cpu_ms_per_order"] == 150.0
    assert sandboxes["split_writer_ms_per_order"] == 15.0
    assert sandboxes["rest_ms_per_order"] == 105.0  # 150 - 30 in the SDK - 15 writing


def test_the_lab_prints_each_kind_of_process_split_with_its_calls_per_order() -> None:
    before = {4: totals(1.0, {}, {})}
    after = {
        4: totals(
            3.0,
            {"SendMessageBatch": (0.4, 40)},
            {"statement": (0.2, 300), "pool checkout (with its check)": (0.1, 100)},
        )
    }
    split = difference(before, after, {4: "sandboxes"}, per=100)
    report = json.loads((Path(__file__).parents[2] / BENCH_REPORT).read_text())
    report["resources"]["cpu_split"] = split
    console = Console(width=300, record=True)
    console.print(render(report))
    assert (
        "sandboxes, ms per order │ 20.0 in all, AWS SDK 4.0 (0.4 calls), psycopg 3.0"
        " (3.0 statements, 4.0 calls), the split's writer 0.0, the rest 13.0"
    ) in console.export_text()
