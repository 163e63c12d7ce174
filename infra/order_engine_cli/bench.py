"""`order-engine bench`: orders through a real stack, over HTTP and WebSocket, with figures.

It starts `order-engine up` itself (a subprocess on free ports; stopped with Ctrl-C's
SIGINT at the end), or drives one already running (`--api`). See docs/benchmarks.md
for the figures of this machine and what limits them. The run itself is in
bench_sampling.py, its stack in bench_stack.py, its table and JSON in bench_report.py;
`order-engine lab cpu-split` is the same run with the CPU split of cpu_split.py.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from order_engine_cli import cpu_split
from order_engine_cli.bench_load import LoadPlan
from order_engine_cli.bench_report import (
    add_cpu_per_order,
    add_work_floor,
    command_line,
    finite,
    render,
)
from order_engine_cli.bench_sampling import check_key, sample_run
from order_engine_cli.bench_stack import PROFILES, start_stack, stop_stack
from order_engine_cli.dev_key import DEV_KEY_FILE, read_saved_key
from order_engine_cli.options import api_key_option, concurrency_option, sqs_option
from order_engine_cli.up_process import UpProcess

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option(
        "--api",
        "api_url",
        default=None,
        help="HTTP API of a running stack (e.g. http://127.0.0.1:3000). Unset: start "
        "`order-engine up` on free ports for this run, and stop it at the end.",
    ),
    click.option(
        "--orders",
        default=200,
        show_default=True,
        type=click.IntRange(1, 1_000_000),
        help="How many orders to place (with --rate, the run lasts orders / rate minutes).",
    ),
    click.option(
        "--rate",
        type=click.FloatRange(min=1, min_open=False),
        default=None,
        help="Arrival rate, orders per minute (open loop: arrivals do not wait for the "
        "stack). With --concurrency too, at most that many are in flight.",
    ),
    click.option(
        "--concurrency",
        type=click.IntRange(1, 10_000),
        default=None,
        help="Orders in flight at once; alone, a closed loop: each finished order is "
        "replaced at once. Default without --rate: 10.",
    ),
    click.option(
        "--sockets",
        type=click.IntRange(0, 1000),
        default=0,
        show_default=True,
        help="WebSocket connections shared by all orders, each subscribing to many (as a "
        "trading client holds them); 0: one connection per order, opened after its POST "
        "and closed at its end (as a page following one order does).",
    ),
    click.option(
        "--profile",
        type=click.Choice(sorted(PROFILES)),
        default="realistic",
        show_default=True,
        help="Simulated venue latency: realistic (quotes 0.2 s, confirmation 2-3 s) or "
        "instant (`up --latency-scale 0`). With --api, say which the running stack uses: "
        "it sets the venues-alone reference latency.",
    ),
    sqs_option(
        what="SQS of the stack we start (by default the one `up` runs on)",
        note="moto's receives slow down with the backlog: a reference, not a load test.",
    ),
    concurrency_option("--stack-concurrency"),
    click.option(
        "--stack-env",
        multiple=True,
        metavar="NAME=VALUE",
        help="Environment of the stack we start, e.g. DB_POOL_MAX=20 (repeatable).",
    ),
    click.option(
        "--deadline",
        default=60.0,
        show_default=True,
        help="Seconds an accepted order may take to reach confirmed/failed before it "
        "counts as lost.",
    ),
    api_key_option(),
    click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Also write every figure, the configuration and the machine here.",
    ),
]


def load_options(command: F) -> F:
    """The options of a benchmark run (`bench`, and the lab's `cpu-split`)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


@dataclass(frozen=True)
class BenchRun:
    """A benchmark run, as its options ask for it."""

    api_url: str | None
    orders: int
    rate: float | None
    concurrency: int | None
    sockets: int
    profile: str
    sqs: str
    stack_concurrency: int
    stack_env: tuple[str, ...]
    deadline: float
    api_key: str | None
    json_path: Path | None


@click.command()
@load_options
def bench(**options: Any) -> None:
    """Drive orders through the stack over real HTTP and WebSocket and print figures:
    orders per minute sustained, end-to-end latency (POST to confirmed/failed),
    time in each status, WebSocket delivery lag, lost, failed and out-of-order
    orders, and the CPU and memory the stack used.

    \b
    Examples:
      order-engine bench --orders 100 --rate 100 --concurrency 10
      order-engine bench --orders 5000 --rate 1000 --stack-concurrency 40 --json r.json
      order-engine bench --profile instant --orders 3000 --concurrency 100
      order-engine bench --api http://127.0.0.1:3000 --orders 50   # a running stack

    A stack we start gets RATE_LIMIT_PER_MINUTE=0, so one key may place every order;
    a running one must allow the rate you ask for.
    """
    run_bench(BenchRun(**options), split_cpu=False)


def run_bench(run: BenchRun, *, split_cpu: bool) -> None:
    """Start the stack (unless --api), drive the load, print and write the figures.
    `split_cpu`: also split the CPU of the stack's Python processes by library."""
    concurrency = 10 if run.rate is None and run.concurrency is None else run.concurrency
    if split_cpu and run.api_url is not None:
        raise click.UsageError("the CPU split needs a stack the bench starts (no --api)")
    env = {"RATE_LIMIT_PER_MINUTE": "0", **_parse_env(run.stack_env)}
    console = Console(stderr=True)
    stack: UpProcess | None = None
    split_dir: Path | None = None
    api_url = run.api_url
    with ExitStack() as cleanup:
        if split_cpu:
            split_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
            env.update(cpu_split.stack_environment(split_dir, {**os.environ, **env}))
        if api_url is None:
            stack = start_stack(
                console,
                sqs=run.sqs,
                profile=run.profile,
                concurrency=run.stack_concurrency,
                env=env,
            )
            cleanup.callback(stop_stack, stack, console)
            api_url = stack.api_url
        plan = LoadPlan(
            orders=run.orders,
            rate_per_minute=run.rate,
            concurrency=concurrency,
            deadline=run.deadline,
            # The development key `up` saved (read after it started: a first run makes it).
            api_key=run.api_key or read_saved_key(DEV_KEY_FILE),
            sockets=run.sockets,
        )
        check_key(api_url, plan.api_key)
        report = sample_run(console, api_url, plan, stack, split_dir)
    if run.profile == "realistic":
        add_work_floor(report["results"]["latency_seconds"])
    add_cpu_per_order(report)
    started = stack is not None
    report["config"] = {
        "api": "started: " + " ".join(stack.argv[1:]) if stack is not None else api_url,
        "orders": run.orders,
        "rate_per_minute": run.rate,
        "concurrency": concurrency,
        "sockets": run.sockets,
        "profile": run.profile,
        "sqs": run.sqs if started else "(the running stack's)",
        "stack_concurrency": run.stack_concurrency if started else None,
        "stack_env": env if started else {},
        "deadline_seconds": run.deadline,
        "command": command_line(),
    }
    Console().print(render(report))
    if run.json_path is not None:
        run.json_path.parent.mkdir(parents=True, exist_ok=True)
        run.json_path.write_text(json.dumps(finite(report), indent=2) + "\n")
        console.print(f"figures written to {run.json_path}")


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--stack-env")
        env[name] = value
    return env
