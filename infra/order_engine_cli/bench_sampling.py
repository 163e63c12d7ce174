"""One benchmark run, sampled: the load driven over HTTP and WebSocket, and meanwhile the
CPU and memory of the stack's processes (and, for the lab's CPU split, where the CPU of
its Python processes goes); the machine it ran on."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from order_engine_cli import bench_resources, cpu_split
from order_engine_cli.bench_load import Counters, KeepAliveHttp, LoadDriver, LoadPlan
from order_engine_cli.bench_report import stack_process_name
from order_engine_cli.bench_stack import running_stack
from order_engine_cli.bench_stats import summarize
from order_engine_cli.dev_key import DEV_KEY_FILE, read_saved_key
from order_engine_cli.project import POSTGRES_DIR
from order_engine_cli.up_process import UpProcess


def sample_run(
    console: Console,
    api_url: str,
    plan: LoadPlan,
    stack: UpProcess | None,
    split_dir: Path | None,
) -> dict[str, Any]:
    roots = {}
    if stack is not None:
        stack_pid, embedded = stack.pid, "DATABASE_URL" not in stack.env
    else:
        running = running_stack(api_url)
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
    reference_before = reference_cpu_ms()
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    # Collected (which takes a second) before the sampler starts, so that both begin
    # when the load does, as they both end when it has ended.
    split_before = cpu_split.collect(split_dir) if split_dir else {}
    if sampler is not None:
        sampler.start()
    with progress:
        traces = asyncio.run(driver.run())
    finished = time.time()
    if split_dir:
        split_after = cpu_split.collect(split_dir)
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
        # Named and counted as the stack's CPU per order is (bench_report.add_cpu_per_order):
        # the runtime's process is `up`, and the orders are those that ended.
        labels = {
            pid: stack_process_name(name)
            for pid, name in (sampler.labels() if sampler is not None else {}).items()
        }
        resources["cpu_split"] = cpu_split.difference(
            split_before, split_after, labels, per=results["orders"]["terminal"]
        )
    # Where the lost ones are: stuck on the server, or finished but never pushed?
    results["lost_orders"] = {
        order_id: driver.server_status(order_id) for order_id in results["lost_orders"][:20]
    }
    return {
        "results": results,
        "resources": resources,
        "machine": machine(load_before, reference_before),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(finished)),
    }


def check_key(api_url: str, api_key: str | None) -> None:
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


def machine(load_before: tuple[float, float, float], reference_before: float) -> dict[str, Any]:
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
        "reference_cpu_ms_before": reference_before,
        "reference_cpu_ms_after": reference_cpu_ms(),
    }


# The reference work: what the stack does most (Python calls, dicts, strings, JSON), in
# a fixed amount. Its CPU time says how fast the machine runs Python in this hour: on a
# shared machine the same code costs up to twice as much from one hour to the next, and
# a run's CPU per order is only comparable with another's at a like speed.
_REFERENCE_DOCUMENT = {"orderId": "0" * 36, "status": "routing", "seq": 2, "amount": "1.5"}


def _reference_work() -> None:
    for i in range(6_000):
        document = dict(_REFERENCE_DOCUMENT, seq=i)
        json.loads(json.dumps(document))
        "".join(str(key) for key in document).upper().split("S")


def reference_cpu_ms(rounds: int = 5) -> float:
    """The CPU ms this process spends on the reference work (the median of `rounds`, so
    one preempted round does not count): 20-60 ms a round on the hosts this project's
    figures come from (docs/benchmarks.md, "The machine")."""
    times = []
    for _ in range(rounds):
        started = time.thread_time()
        _reference_work()
        times.append((time.thread_time() - started) * 1000)
    return round(statistics.median(times), 1)
