"""`order-engine lab`: instruments for developers who study the benchmark, hidden from
the user's command list (`order-engine lab --help` lists them)."""

from __future__ import annotations

from typing import Any

import click

from order_engine_cli.bench import BenchRun, load_options, run_bench
from order_engine_cli.bench_sqs import bench_sqs
from order_engine_cli.lab_watch import watch_scale


@click.group(hidden=True)
def lab() -> None:
    """Instruments for studying the benchmark: where the CPU goes, and what SQS alone
    costs on this machine (docs/benchmarks.md)."""


@lab.command("cpu-split")
@load_options
def cpu_split_command(**options: Any) -> None:
    """`order-engine bench` with the CPU of the stack's Python processes split into AWS
    SDK calls, database driver calls and the rest, per order (a stack it starts only).

    \b
    Example:
      order-engine lab cpu-split --orders 1000 --rate 1000 --json split.json
    """
    run_bench(BenchRun(**options), split_cpu=True)


lab.add_command(bench_sqs)
lab.add_command(watch_scale)
