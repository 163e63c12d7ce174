"""`order-engine bench`: orders through a real stack, over HTTP and WebSocket, with figures.

It starts `order-engine up` itself (a subprocess on free ports; stopped with Ctrl-C's
SIGINT at the end), or drives one already running (`--api`). See docs/benchmarks.md
for the figures of this machine and what limits them.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from order_engine.dex.simulation import CONFIRM_SECONDS, LATENCY
from order_engine_cli import bench_resources, cpu_split
from order_engine_cli.bench_load import Counters, KeepAliveHttp, LoadDriver, LoadPlan
from order_engine_cli.bench_stack import BenchStack, StackFailed
from order_engine_cli.bench_stats import HAPPY_PATH, PERCENTILES, simulated_work, summarize
from order_engine_cli.dev_key import DEV_KEY_FILE, read_saved_key
from order_engine_cli.project import POSTGRES_DIR
from order_engine_cli.running import RunningStack, running_stacks

PROFILES = {"realistic": "1", "instant": "0"}


@click.command()
@click.option(
    "--api",
    "api_url",
    default=None,
    help="HTTP API of a running stack (e.g. http://127.0.0.1:3000). Unset: start "
    "`order-engine up` on free ports for this run, and stop it at the end.",
)
@click.option(
    "--orders",
    default=200,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="How many orders to place (with --rate, the run lasts orders / rate minutes).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=1, min_open=False),
    default=None,
    help="Arrival rate, orders per minute (open loop: arrivals do not wait for the "
    "stack). With --concurrency too, at most that many are in flight.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=None,
    help="Orders in flight at once; alone, a closed loop: each finished order is "
    "replaced at once. Default without --rate: 10.",
)
@click.option(
    "--sockets",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="WebSocket connections shared by all orders, each subscribing to many (as a "
    "trading client holds them); 0: one connection per order, opened after its POST "
    "and closed at its end (as a page following one order does).",
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="realistic",
    show_default=True,
    help="Simulated venue latency: realistic (quotes 0.2 s, confirmation 2-3 s) or "
    "instant (`up --latency-scale 0`). With --api, say which the running stack uses: "
    "it sets the venues-alone reference latency.",
)
@click.option(
    "--sqs",
    default="localstack",
    show_default=True,
    help="SQS of the stack we start: localstack, moto (its receives slow down with the "
    "backlog: a reference, not a load test) or an endpoint URL.",
)
@click.option(
    "--stack-concurrency",
    type=click.IntRange(2, 1000),
    default=10,
    show_default=True,
    help="`up --concurrency`: concurrent invocations per queue.",
)
@click.option(
    "--stack-env",
    multiple=True,
    metavar="NAME=VALUE",
    help="Environment of the stack we start, e.g. DB_POOL_MAX=20 (repeatable).",
)
@click.option(
    "--deadline",
    default=60.0,
    show_default=True,
    help="Seconds an accepted order may take to reach confirmed/failed before it counts as lost.",
)
@click.option(
    "--cpu-split",
    "cpu_split_wanted",
    is_flag=True,
    help="Also split the CPU of the stack's Python processes into AWS SDK calls, "
    "database driver calls and the rest, per order (a stack we start only; "
    "docs/benchmarks.md shows what it told).",
)
@click.option(
    "--api-key",
    envvar="ORDER_ENGINE_API_KEY",
    default=None,
    help="API key [env: ORDER_ENGINE_API_KEY]; unset: .data/dev-api-key if it exists.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write every figure, the configuration and the machine here.",
)
def bench(
    api_url: str | None,
    orders: int,
    rate: float | None,
    concurrency: int | None,
    sockets: int,
    profile: str,
    sqs: str,
    stack_concurrency: int,
    stack_env: tuple[str, ...],
    deadline: float,
    cpu_split_wanted: bool,
    api_key: str | None,
    json_path: Path | None,
) -> None:
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
    if rate is None and concurrency is None:
        concurrency = 10
    if cpu_split_wanted and api_url is not None:
        raise click.UsageError("--cpu-split needs a stack the bench starts (no --api)")
    env = {"RATE_LIMIT_PER_MINUTE": "0", **_parse_env(stack_env)}
    console = Console(stderr=True)
    stack: BenchStack | None = None
    split_dir: Path | None = None
    with ExitStack() as cleanup:
        if cpu_split_wanted:
            split_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
            env.update(cpu_split.stack_environment(split_dir, {**os.environ, **env}))
        if api_url is None:
            stack = BenchStack(
                sqs=sqs,
                latency_scale=PROFILES[profile],
                concurrency=stack_concurrency,
                env=env,
            )
            with console.status(f"starting `order-engine up --sqs {sqs}` (log: {stack.log_path})"):
                try:
                    stack.start()
                except StackFailed as error:
                    raise click.ClickException(str(error)) from None
            cleanup.callback(_stop, stack, console)
            api_url = stack.api_url
        plan = LoadPlan(
            orders=orders,
            rate_per_minute=rate,
            concurrency=concurrency,
            deadline=deadline,
            # The development key `up` saved (read after it started: a first run makes it).
            api_key=api_key or read_saved_key(DEV_KEY_FILE),
            sockets=sockets,
        )
        _check_key(api_url, plan.api_key)
        report = _run(console, api_url, plan, stack, split_dir)
    if profile == "realistic":
        _add_work_floor(report["results"]["latency_seconds"])
    report["config"] = {
        "api": api_url if stack is None else "started: " + " ".join(stack.argv[1:]),
        "orders": orders,
        "rate_per_minute": rate,
        "concurrency": concurrency,
        "sockets": sockets,
        "profile": profile,
        "sqs": sqs if stack is not None else "(the running stack's)",
        "stack_concurrency": stack_concurrency if stack is not None else None,
        "stack_env": env if stack is not None else {},
        "deadline_seconds": deadline,
        "command": _command_line(),
    }
    Console().print(render(report))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(_finite(report), indent=2) + "\n")
        console.print(f"figures written to {json_path}")


def _run(
    console: Console,
    api_url: str,
    plan: LoadPlan,
    stack: BenchStack | None,
    split_dir: Path | None,
) -> dict[str, Any]:
    roots = {}
    if stack is not None:
        stack_pid, embedded = stack.pid, "DATABASE_URL" not in stack.env
    else:
        running = _running_stack(api_url)
        stack_pid = running.pid if running else None
        embedded = bool(running and running.database)
    if stack_pid is not None:
        roots["stack"] = stack_pid
    # PostgreSQL is not the stack's child (pgserver daemonizes it): found by its pid file.
    if embedded and (postgres := bench_resources.postmaster_pid(POSTGRES_DIR)) is not None:
        roots["postgres"] = postgres
    sampler = bench_resources.TreeSampler(roots) if bench_resources.available() else None
    progress = Progress(
        TextColumn("[bold]orders"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} ended"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task("orders", total=plan.orders, detail="")

    def show(counters: Counters) -> None:
        detail = (
            f"sent {counters.sent}  in flight {counters.in_flight}  "
            f"failed {counters.failed}  rejected {counters.rejected}  lost {counters.lost}"
        )
        ended = counters.terminal + counters.lost + counters.rejected
        progress.update(task, completed=ended, detail=detail)

    driver = LoadDriver(api_url, plan, show)
    load_before = os.getloadavg()
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    if sampler is not None:
        sampler.start()
    split_before = cpu_split.read(split_dir) if split_dir else {}
    with progress:
        traces = asyncio.run(driver.run())
    finished = time.time()
    if split_dir:
        time.sleep(2 * cpu_split.DUMP_INTERVAL)  # every process has written since
        split_after = cpu_split.read(split_dir)
    resources = sampler.stop() if sampler is not None else {}
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    resources["bench_client"] = {
        "cpu_seconds": round(
            client_after.ru_utime
            + client_after.ru_stime
            - client_before.ru_utime
            - client_before.ru_stime,
            2,
        )
    }
    results = summarize(traces, finished_at=finished)
    if split_dir:
        labels = sampler.labels() if sampler is not None else {}
        resources["cpu_split"] = cpu_split.difference(
            split_before, split_after, labels, per=results["orders"]["accepted"]
        )
    # Where the lost ones are: stuck on the server, or finished but never pushed?
    results["lost_orders"] = {
        order_id: driver.server_status(order_id) for order_id in results["lost_orders"][:20]
    }
    return {
        "results": results,
        "resources": resources,
        "machine": _machine(load_before),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(finished)),
    }


def _check_key(api_url: str, api_key: str | None) -> None:
    """Stop before the load if the stack refuses the key: every order would be a 401,
    and the run would only say so at its end."""
    auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:  # an order nobody has: 404 with a good key, 401 without one
        status, body = KeepAliveHttp(api_url, auth, timeout=10).request(
            "GET", f"/api/orders/{uuid.UUID(int=0)}"
        )
    except (OSError, ValueError) as error:
        raise click.ClickException(f"cannot reach {api_url}: {error}") from None
    if status in (401, 403):
        problem = body.get("error") if isinstance(body, dict) else None
        message = problem.get("message") if isinstance(problem, dict) else body
        if api_key is None:
            had = f"no key ({DEV_KEY_FILE} does not exist)"
        elif api_key == read_saved_key(DEV_KEY_FILE):
            had = f"the key saved in {DEV_KEY_FILE}, which opens only the database it was made for"
        else:
            had = "the key given"
        raise click.ClickException(
            f"the stack refused the request (HTTP {status}: {message}); it sent {had}."
            " Pass --api-key or set ORDER_ENGINE_API_KEY; `order-engine keys create NAME`"
            " makes a key for the database the stack uses."
        )


def _add_work_floor(latency: dict[str, Any]) -> None:
    """What the simulated venues alone take (realistic profile), and what the system
    adds on top at each percentile: the overhead the brief's floor target bounds."""
    work = simulated_work(LATENCY["quote"], LATENCY["build"], LATENCY["submit"], CONFIRM_SECONDS)
    latency["venues_alone"] = work
    latency["overhead"] = {
        f"p{q}": latency["end_to_end"][f"p{q}"] - work[f"p{q}"] for q in PERCENTILES
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
    return table


def _split(split: dict[str, Any]) -> str:
    """One process kind's CPU per order: in all, in each library by call, the rest."""
    parts = [f"{_num(split['cpu_ms_per_order'], 1)} in all"]
    for library, title in ((cpu_split.AWS, "AWS SDK"), (cpu_split.DATABASE, "psycopg")):
        calls = split[library]["by_call"]
        count = sum(call["calls_per_order"] for call in calls.values())
        parts.append(f"{title} {_num(split[library]['ms_per_order'], 1)} ({count:.1f} calls)")
    parts.append(f"the rest {_num(split['rest_ms_per_order'], 1)}")
    return ", ".join(parts)


def _dist(d: dict[str, Any]) -> str:
    return (
        f"p50 {_num(d['p50'])}  p90 {_num(d['p90'])}  p99 {_num(d['p99'])}  "
        f"max {_num(d['max'])}  (n={d['count']})"
    )


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _finite(value: Any) -> Any:
    """NaN (no data) as JSON null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gb": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }


def _command_line() -> str | None:
    """This run's command, for the record (None when not run as `order-engine`)."""
    if Path(sys.argv[0]).name != "order-engine":
        return None
    return shlex.join(["order-engine", *sys.argv[1:]])


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--stack-env")
        env[name] = value
    return env


def _running_stack(api_url: str) -> RunningStack | None:
    """The `order-engine up` serving `api_url`, if it runs from this checkout."""
    for running in running_stacks():
        if running.http.rstrip("/") == api_url.rstrip("/"):
            return running
    return None


def _stop(stack: BenchStack, console: Console) -> None:
    with console.status("stopping the stack (Ctrl-C)…"):
        code = stack.stop()
    if code not in (0, None):
        console.print(f"[yellow]the stack exited with {code}; its log: {stack.log_path}")
