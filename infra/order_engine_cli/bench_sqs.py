"""`order-engine bench-sqs`: the stack's SQS traffic alone, with no engine at all.

Each order of the real stack puts eight messages through five queues: the route step
when it is accepted, then for each of the four steps a notify message and (but after
confirm) the next step's message; every message is received and deleted by a poller.
This command replays exactly that traffic (what each step publishes comes from the
outbox's own `transition_messages`) against an SQS backend, from a few
processes that do nothing else: no database, no HTTP, no WebSocket, no venue. So it
measures the floor that any stack built on these queues pays on this machine: what
the SQS server spends per order and how fast it can go, and what boto3 spends calling
it. docs/benchmarks.md uses it to tell the emulator's share of the limit from ours.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue as queue_module
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from local_runtime.sqs_backends import SqsBackend, SqsTarget
from local_runtime.sqs_deletes import DEFAULT_LINGER_SECONDS, BatchedDeletes
from order_engine.messaging import NOTIFY_TOPIC, StepMessage
from order_engine.orders import TERMINAL, Status, Step, step_for
from order_engine.outbox import transition_messages
from order_engine_cli import bench_resources
from order_engine_cli.bench_stats import distribution
from order_engine_cli.project import DATA_DIR

# One queue per topic, as in template.yaml.
TOPICS = (*(step.value for step in Step), NOTIFY_TOPIC)


@click.command("bench-sqs")
@click.option("--orders", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option(
    "--rate",
    default=1000.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Orders per minute, open loop (each order is eight messages through five queues).",
)
@click.option(
    "--sqs",
    default="localstack",
    show_default=True,
    help="ministack, moto or localstack (started for the run), or the URL of an SQS already "
    "running (its CPU is then not counted).",
)
@click.option(
    "--processes",
    default=2,
    show_default=True,
    type=click.IntRange(1, 16),
    help="Replaying processes; each polls every queue, as `up --workers` does.",
)
@click.option(
    "--delete-linger",
    default=DEFAULT_LINGER_SECONDS,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds a settled message may wait to share a DeleteMessageBatch, as in the local "
    "runtime's pollers; 0: deleted as soon as its hop is done, nearly one call per message.",
)
@click.option("--deadline", default=60.0, show_default=True, help="Seconds to wait at the end.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
def bench_sqs(
    orders: int,
    rate: float,
    sqs: str,
    processes: int,
    delete_linger: float,
    deadline: float,
    json_path: Path | None,
) -> None:
    """Replay the SQS traffic of ORDERS orders with no engine, and print what it cost.

    The SQS calls per order are the stack's own: SendMessageBatch of one message per
    publish, ReceiveMessage of up to ten, and DeleteMessageBatch gathered as the local
    runtime's pollers gather them. Compare its figures with `order-engine bench` at the
    same rate: what the stack spends beyond these is the engine's, the APIs' and
    PostgreSQL's.
    """
    console = Console(stderr=True)
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    # The machine may be shared: what else was running shows in the load before the run.
    load_before = [round(x, 2) for x in os.getloadavg()]
    backend = SqsBackend(sqs, data_dir=DATA_DIR, region=region)
    with console.status(f"starting SQS ({sqs})"):
        target = backend.start()
    try:
        report = _run(target, region, orders, rate, processes, delete_linger, deadline, console)
    finally:
        backend.stop()
    report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report["load_average_before"] = load_before
    report["config"] = {
        "orders": orders,
        "rate": rate,
        "sqs": sqs,
        "processes": processes,
        "delete_linger": delete_linger,
    }
    console.print(_render(report))
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"figures written to {json_path}")


def _run(
    target: SqsTarget,
    region: str,
    orders: int,
    rate: float,
    processes: int,
    delete_linger: float,
    deadline: float,
    console: Console,
) -> dict[str, Any]:
    client = target.client(region)
    prefix = f"bench-sqs-{uuid.uuid4().hex[:8]}"
    urls = {name: client.create_queue(QueueName=f"{prefix}-{name}")["QueueUrl"] for name in TOPICS}
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    stop = context.Event()
    shares = [orders // processes + (i < orders % processes) for i in range(processes)]
    start_at = time.time() + 2.0  # every process starts sending at the same moment
    children = [
        context.Process(
            target=_replay,
            args=(
                target,
                region,
                urls,
                share,
                rate * share / orders,
                delete_linger,
                start_at,
                stop,
                results,
            ),
            daemon=True,
        )
        for share in shares
    ]
    for child in children:
        child.start()
    sampler = bench_resources.TreeSampler({"run": os.getpid()})
    time.sleep(max(0.0, start_at - time.time()))
    sampler.start()
    # A message SQS delivers twice (at least once, as promised) ends its order twice:
    # the first end counts.
    latencies: dict[str, float] = {}
    last_done = time.time()
    give_up = start_at + orders / rate * 60 + deadline
    with console.status("replaying") as status:
        while len(latencies) < orders and time.time() < give_up:
            try:
                for order, seconds in results.get(timeout=0.5):
                    latencies.setdefault(order, seconds)
                last_done = time.time()
            except queue_module.Empty:
                pass
            status.update(f"replaying: {len(latencies)}/{orders} orders through")
    resources = sampler.stop()
    stop.set()
    calls = _call_counts(results, len(children))
    for child in children:
        child.join(10)
    for url in urls.values():
        client.delete_queue(QueueUrl=url)
    done = len(latencies)
    seconds = max(last_done - start_at, 1e-9)
    cpu = resources["run"]["cpu_seconds_by_process"]
    server = sum(v for k, v in cpu.items() if k in ("localstack", "ministack", "moto"))
    clients = cpu.get("workers", 0.0)
    return {
        "orders": orders,
        "completed": done,
        "completed_per_minute": round((done - 1) / seconds * 60, 1) if done > 1 else None,
        "latency_seconds": distribution(list(latencies.values())),
        "sqs_calls_per_order": {op: round(n / max(done, 1), 2) for op, n in sorted(calls.items())},
        "cpu_ms_per_order": {
            "sqs_server": round(server * 1000 / max(done, 1), 1),
            "replaying_clients": round(clients * 1000 / max(done, 1), 1),
        },
        "sqs_server_cores": round(server / seconds, 2),
        "resources": resources,
    }


def _call_counts(results: Any, children: int) -> Counter[str]:
    """The SQS calls the children counted, sent as each ends (after any latencies still
    queued, which are skipped)."""
    calls: Counter[str] = Counter()
    reported = 0
    while reported < children:
        try:
            item = results.get(timeout=30)
        except queue_module.Empty:
            break  # a child that hangs or died: its calls are missing from the figures
        if isinstance(item, dict):
            calls.update(item)
            reported += 1
    return calls


def _replay(
    target: SqsTarget,
    region: str,
    urls: dict[str, str],
    orders: int,
    rate: float,
    delete_linger: float,
    start_at: float,
    stop: Any,
    results: Any,
) -> None:
    """One replaying process: its share of the arrivals, and a poller on every queue."""
    client = target.client(region, max_connections=64)
    calls: Counter[str] = Counter()
    client.meta.events.register("before-call.sqs.*", lambda model, **_: calls.update([model.name]))
    hops = ThreadPoolExecutor(32)  # the records of running batches
    done: list[tuple[str, float]] = []  # (order, seconds through five hops)
    done_lock = threading.Lock()

    def send(name: str, body: dict[str, Any]) -> None:
        client.send_message_batch(
            QueueUrl=urls[name], Entries=[{"Id": "0", "MessageBody": json.dumps(body)}]
        )

    def hop(name: str, message: dict[str, Any], deletes: BatchedDeletes) -> None:
        body = json.loads(message["Body"])
        if name == NOTIFY_TOPIC:
            if body["last"]:
                with done_lock:
                    done.append((body["orderId"], time.time() - body["t0"]))
        else:
            # What the step's transition publishes after its commit, one call per topic,
            # with the order's start and whether this is its end riding along.
            reached = Step(name).to_status
            timing = {"t0": body["t0"], "last": reached in TERMINAL}
            for outgoing in transition_messages(uuid.UUID(body["orderId"]), reached):
                send(outgoing.topic, {**outgoing.payload, **timing})
        deletes.add([message])

    def poll(name: str) -> None:
        deletes = BatchedDeletes(client, urls[name], name=name, linger=delete_linger)
        while not stop.is_set():
            try:
                messages = client.receive_message(
                    QueueUrl=urls[name], MaxNumberOfMessages=10, WaitTimeSeconds=1
                ).get("Messages", [])
            except Exception:  # a saturated server's timeout, or the run's end: try again
                time.sleep(0.5)
                continue
            for message in messages:
                hops.submit(hop, name, message, deletes)
        deletes.close(5)

    pollers = [threading.Thread(target=poll, args=(name,), daemon=True) for name in urls]
    for poller in pollers:
        poller.start()
    first = step_for(Status.PENDING)
    assert first is not None
    for i in range(orders):
        time.sleep(max(0.0, start_at + i * 60 / rate - time.time()))
        payload = StepMessage(uuid.uuid4(), first).to_payload()
        hops.submit(send, first.value, {**payload, "t0": time.time()})
    while not stop.wait(0.5):
        with done_lock:
            if done:
                results.put(done[:])
                done.clear()
    for poller in pollers:
        poller.join(5)
    hops.shutdown(wait=True)
    results.put(dict(calls))


def _render(report: dict[str, Any]) -> Table:
    table = Table(title="order-engine bench-sqs (the stack's SQS traffic, no engine)")
    table.add_column("figure")
    table.add_column("value")
    latency = report["latency_seconds"]
    table.add_row("orders", f"{report['completed']} of {report['orders']} through all five hops")
    table.add_row("orders per minute", str(report["completed_per_minute"]))
    hops = f"p50 {latency['p50']:.3f}  p99 {latency['p99']:.3f}  max {latency['max']:.3f}"
    table.add_row("five hops (s)", hops)
    table.add_row(
        "SQS calls per order",
        "  ".join(f"{op} {n}" for op, n in report["sqs_calls_per_order"].items()),
    )
    cpu = report["cpu_ms_per_order"]
    table.add_row(
        "CPU ms per order",
        f"SQS server {cpu['sqs_server']}  replaying clients (boto3) {cpu['replaying_clients']}",
    )
    table.add_row("SQS server", f"{report['sqs_server_cores']} cores busy on average")
    machine = report["resources"]["machine"]
    table.add_row("machine busy", f"{machine['busy_fraction']:.0%} of {machine['cpus']} CPUs")
    return table
