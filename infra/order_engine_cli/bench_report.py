"""What a benchmark run prints and writes: the table of figures, and the JSON report."""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from order_engine.dex.simulation import CONFIRM_SECONDS, LATENCY
from order_engine_cli import cpu_split
from order_engine_cli.bench_stats import HAPPY_PATH, PERCENTILES, simulated_work


def add_work_floor(latency: dict[str, Any]) -> None:
    """What the simulated venues alone take (realistic profile), and what the system
    adds on top at each percentile: the overhead the brief's floor target bounds."""
    work = simulated_work(LATENCY["quote"], LATENCY["build"], LATENCY["submit"], CONFIRM_SECONDS)
    latency["venues_alone"] = work
    latency["overhead"] = {
        f"p{q}": latency["end_to_end"][f"p{q}"] - work[f"p{q}"] for q in PERCENTILES
    }


def stack_process_name(name: str) -> str:
    """What the figures call a process of the stack's tree: the sampler names the tree's
    first process "root", and that is the runtime, `up`."""
    return "up" if name == "root" else name


def add_cpu_per_order(report: dict[str, Any]) -> None:
    """The CPU the whole local stack spent per order that ended: the runtime (`up`) with
    its sandboxes, the SQS server and PostgreSQL;
    the bench client is not counted. Only when the bench sampled the stack."""
    resources, ended = report["resources"], report["results"]["orders"]["terminal"]
    if "stack" not in resources or not ended:
        return
    seconds = {
        stack_process_name(name): value
        for name, value in resources["stack"]["cpu_seconds_by_process"].items()
    }
    if "postgres" in resources:
        seconds["postgres"] = resources["postgres"]["cpu_seconds"]
    resources["cpu_ms_per_order"] = {
        "all": sum(seconds.values()) * 1000 / ended,
        "by_process": {name: value * 1000 / ended for name, value in seconds.items() if value},
    }


def render(report: dict[str, Any]) -> Table:
    results, resources = report["results"], report["resources"]
    counts, throughput = results["orders"], results["throughput"]
    table = Table(title="order-engine bench", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "orders",
        f"{counts['offered']} offered, {counts['accepted']} accepted, "
        f"{counts['confirmed']} confirmed, {counts['failed']} failed, "
        f"[{'red' if counts['lost'] else 'green'}]{counts['lost']} lost[/], "
        f"{counts['out_of_order_or_gaps']} out of order or with gaps",
    )
    table.add_row(
        "orders per minute",
        f"{_num(throughput['completed_per_minute'], 0)} completed "
        f"(offered {_num(throughput['offered_per_minute'], 0)})",
    )
    latency = results["latency_seconds"]
    table.add_row("end to end (s)", _dist(latency["end_to_end"]))
    if "venues_alone" in latency:
        table.add_row("  venues alone (s)", _dist(latency["venues_alone"]))
        overhead = latency["overhead"]
        table.add_row(
            "  overhead (s)",
            "  ".join(f"{q} {_num(overhead[q])}" for q in ("p50", "p90", "p99")),
        )
    drift = latency["drift"]
    table.add_row(
        "  p50 first/last fifth",
        f"{_num(drift['first_fifth_p50'])} / {_num(drift['last_fifth_p50'])}",
    )
    table.add_row("POST answered (s)", _dist(latency["accept"]))
    for status in HAPPY_PATH:
        if status in results["state_seconds"]:
            table.add_row(f"  in {status} (s)", _dist(results["state_seconds"][status]))
    lag = results["websocket_lag_seconds"]
    table.add_row(
        "WebSocket lag (ms)",
        f"p50 {_num(lag['p50'] * 1000, 1)}  p99 {_num(lag['p99'] * 1000, 1)}  "
        f"max {_num(lag['max'] * 1000, 1)}  ({lag['count']} live events)",
    )
    for label, key in (("failures", "failure_reasons"), ("rejected", "rejections")):
        if results[key]:
            table.add_row(label, ", ".join(f"{n} {why}" for why, n in results[key].items()))
    if results["lost_orders"]:
        table.add_row("lost", ", ".join(f"{k[:8]}: {v}" for k, v in results["lost_orders"].items()))
    for name in ("stack", "postgres"):
        if name in resources:
            figures = resources[name]
            parts = figures["cpu_seconds_by_process"]
            split = ", ".join(f"{label} {seconds}" for label, seconds in parts.items())
            table.add_row(
                f"{name} CPU / peak RSS",
                f"{figures['cpu_seconds']} s ({split}) / {figures['peak_rss_mb']} MB",
            )
    if "cpu_ms_per_order" in resources:
        per_order = resources["cpu_ms_per_order"]
        by_process = ", ".join(f"{name} {ms:.1f}" for name, ms in per_order["by_process"].items())
        table.add_row("CPU per order (ms)", f"{per_order['all']:.1f} in all ({by_process})")
    table.add_row("bench client CPU", f"{resources['bench_client']['cpu_seconds']} s")
    for name, split in resources.get("cpu_split", {}).items():
        if split[cpu_split.AWS]["by_call"] or split[cpu_split.DATABASE]["by_call"]:
            table.add_row(f"  {name}, ms per order", _split(split))
    if "machine" in resources:
        busy = resources["machine"]["busy_fraction"]
        table.add_row(
            "machine busy",
            f"{_num(busy * 100 if busy is not None else math.nan, 0)} % of "
            f"{resources['machine']['cpus']} CPUs over {resources['machine']['wall_seconds']} s",
        )
    machine = report.get("machine", {})
    if "reference_cpu_ms_before" in machine:
        table.add_row(
            "machine speed",
            f"the reference work took {machine['reference_cpu_ms_before']} ms of CPU before "
            f"the run, {machine['reference_cpu_ms_after']} after (more: a slower machine)",
        )
    return table


def _split(split: dict[str, Any]) -> str:
    """One process kind's CPU per order: in all, in each library with its calls per order,
    in the split's own writer, the rest."""
    parts = [f"{_num(split['cpu_ms_per_order'], 1)} in all"]
    for library, title in ((cpu_split.AWS, "AWS SDK"), (cpu_split.DATABASE, "psycopg")):
        calls = split[library]["by_call"]
        count = f"{sum(call['calls_per_order'] for call in calls.values()):.1f} calls"
        if library == cpu_split.DATABASE:
            # Its calls are statements, fetches and the pool's checkouts and returns.
            statements = calls.get("statement", {}).get("calls_per_order", 0.0)
            count = f"{statements:.1f} statements, {count}"
        parts.append(f"{title} {_num(split[library]['ms_per_order'], 1)} ({count})")
    parts.append(f"the split's writer {_num(split.get('split_writer_ms_per_order'), 1)}")
    parts.append(f"the rest {_num(split['rest_ms_per_order'], 1)}")
    return ", ".join(parts)


def _dist(d: dict[str, Any]) -> str:
    return (
        f"p50 {_num(d['p50'])}  p90 {_num(d['p90'])}  p99 {_num(d['p99'])}  "
        f"max {_num(d['max'])}  (n={d['count']})"
    )


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def finite(value: Any) -> Any:
    """NaN (no data) as JSON null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def command_line() -> str | None:
    """This run's command, for the record (None when not run as `order-engine`)."""
    if Path(sys.argv[0]).name != "order-engine":
        return None
    return shlex.join(["order-engine", *sys.argv[1:]])
