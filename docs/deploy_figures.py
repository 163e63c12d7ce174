"""Prints the figures of docs/deploy.md, worked out from template.yaml and the engine's code:
the database sizing table and the cost per million orders.

    .venv/bin/python docs/deploy_figures.py

tests/unit/test_deploy_doc.py checks that docs/deploy.md shows exactly what this prints,
so the doc cannot drift from the template or the code.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from order_engine import telemetry
from order_engine.dex.simulation import CONFIRM_SECONDS, LATENCY, METEORA, RAYDIUM
from order_engine.errors import StepError
from order_engine.orders import Status, Step
from order_engine.outbox import first_messages, transition_messages
from order_engine.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"

# Public list prices, us-east-1, x86, in USD (aws.amazon.com/<service>/pricing, December 2026;
# first tiers, after the free tier).
LAMBDA_PER_GB_SECOND = 0.0000166667
LAMBDA_PER_MILLION_REQUESTS = 0.20
SQS_PER_MILLION_REQUESTS = 0.40  # standard queues; one request per 64 KB
REST_API_PER_MILLION_REQUESTS = 3.50
WEBSOCKET_PER_MILLION_MESSAGES = 1.00  # in 32 KB increments
WEBSOCKET_PER_MILLION_CONNECTION_MINUTES = 0.25
ALARM_PER_MONTH = 0.10
DASHBOARD_PER_MONTH = 3.00
SECRET_PER_MONTH = 0.40
CUSTOM_METRIC_PER_MONTH = 0.30  # per metric series (name + dimension values)
LOGS_PER_GB_INGESTED = 0.50

# The engine's own time per invocation besides the venues' waits (database statements,
# SQS sends): charged at 50 ms each, so an order's invocations together are charged
# several times the overhead p99 of its whole life in docs/benchmarks.md (50 and 70 ms).
OVERHEAD_SECONDS = 0.050
# A client watches its order over one WebSocket connection for under a minute.
CONNECTION_MINUTES_PER_ORDER = 1
ANY_ORDER = uuid.UUID(int=0)


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation short tags (`!Ref X`) as {"Ref": X} and the like."""


def _tag(loader: _Loader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _tag)


def _template() -> dict[str, Any]:
    document: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_Loader)  # noqa: S506
    return document


def _default(template: dict[str, Any], value: Any) -> Any:
    """A property's value with parameters at their defaults (Ref, or Fn::If's true side)."""
    if isinstance(value, dict) and "Ref" in value:
        return template["Parameters"][value["Ref"]]["Default"]
    if isinstance(value, dict) and "Fn::If" in value:
        return _default(template, value["Fn::If"][1])
    return value


def _setting(template: dict[str, Any], props: dict[str, Any], key: str) -> Any:
    return props.get(key, template["Globals"]["Function"].get(key))


def _uses_database(handler: str) -> bool:
    source = (ROOT / "functions" / f"{handler.rpartition('.')[0]}.py").read_text()
    return "from order_engine.wiring import engine" in source


@dataclass(frozen=True)
class Bound:
    concurrency: int
    why: str


def concurrency_bound(template: dict[str, Any], props: dict[str, Any]) -> Bound:
    """The most invocations of one function that can run at once, with the defaults."""
    events = list(props.get("Events", {}).values())
    for event in events:
        if event["Type"] == "SQS":
            limit = _default(template, event["Properties"]["ScalingConfig"]["MaximumConcurrency"])
            return Bound(int(limit), "SQS MaximumConcurrency")
    if "ReservedConcurrentExecutions" in props:
        reserved = int(_default(template, props["ReservedConcurrentExecutions"]))
        if reserved > 0:  # 0 is the template's "leave it unreserved"
            return Bound(reserved, "ReservedConcurrentExecutions")
    for event in events:
        if event["Type"] == "Schedule":
            match = re.fullmatch(r"rate\((\d+) minutes?\)", event["Properties"]["Schedule"])
            assert match, event
            period = int(match.group(1)) * 60
            timeout = int(_setting(template, props, "Timeout"))
            # A run lasts at most its timeout; the next may start before it ends.
            return Bound(math.ceil(timeout / period) + 1, f"rate {period} s, timeout {timeout} s")
    raise ValueError(f"{props['Handler']}: nothing bounds its concurrency")


def sizing_table(template: dict[str, Any]) -> str:
    # The pool a Lambda container opens (Lambda sets AWS_LAMBDA_FUNCTION_NAME).
    pool = Settings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "any"}).db_pool_max
    rows = [
        f"| function | bounded by | containers at once | connections (x pool of {pool}) |",
        "|---|---|---:|---:|",
    ]
    total = 0
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        if not _uses_database(props["Handler"]):
            continue
        bound = concurrency_bound(template, props)
        total += bound.concurrency * pool
        rows.append(f"| {name} | {bound.why} | {bound.concurrency} | {bound.concurrency * pool} |")
    rows.append(f"| **all functions** | | | **{total}** |")
    return "\n".join(rows)


def _mean(low_high: tuple[float, float]) -> float:
    return (low_high[0] + low_high[1]) / 2


def _slower_of_two(low_high: tuple[float, float]) -> float:
    """Mean of the larger of two uniform draws (both venues are asked for a quote)."""
    low, high = low_high
    return low + (high - low) * 2 / 3


def order_messages() -> tuple[dict[str, int], int]:
    """Messages one confirmed order puts on each queue, and its events after creation."""
    per_topic: dict[str, int] = {}
    for message in first_messages(ANY_ORDER):
        per_topic[message.topic] = per_topic.get(message.topic, 0) + 1
    transitions = 0
    for step in Step:
        transitions += 1
        for message in transition_messages(ANY_ORDER, step.to_status):
            per_topic[message.topic] = per_topic.get(message.topic, 0) + 1
    assert list(Step)[-1].to_status is Status.CONFIRMED
    return per_topic, transitions


def _usd(price: float) -> str:
    exact = format(Decimal(str(price)), "f")
    return "$" + (exact if len(exact.partition(".")[2]) > 2 else f"{price:.2f}")


def _failure_codes() -> set[str]:
    """The `reason` values of OrdersFailed: the codes of the step errors."""
    codes: set[str] = set()
    pending = list(StepError.__subclasses__())
    while pending:
        error = pending.pop()
        codes.add(error.code)
        pending += error.__subclasses__()
    return codes


def metric_series() -> int:
    """CloudWatch bills each metric name with each set of dimension values."""
    plain = ["OrdersPlaced", "OrdersConfirmed", "SlippageBps", "OutboxRowsRelayed"]
    plain += ["NotificationsDelivered", "ConnectionsGone"]
    return len(plain) + len(Step) + len((RAYDIUM, METEORA)) + len(_failure_codes())


def emf_bytes_per_order(notify_passes: int) -> int:
    """The EMF lines one confirmed order writes, measured by writing them."""
    out = io.StringIO()
    order = ANY_ORDER
    with contextlib.redirect_stdout(out):
        telemetry.order_placed(order)
        telemetry.emit("VenueChosen", 1, order_id=order, venue=RAYDIUM)
        for step in Step:
            telemetry.emit("StepDuration", 1234.567, telemetry.MetricUnit.Milliseconds,
                           order_id=order, step=step.value)  # fmt: skip
        telemetry.emit("OrdersConfirmed", 1, order_id=order)
        telemetry.emit("SlippageBps", 12.3456789, telemetry.MetricUnit.NoUnit, order_id=order)
        for _ in range(notify_passes):
            telemetry.notifier_pass(order, delivered=1, gone=0)
    return len(out.getvalue().encode())


def cost_table(template: dict[str, Any]) -> str:
    per_topic, events = order_messages()
    messages = sum(per_topic.values())
    resources = template["Resources"]

    def memory_gb(function: str) -> float:
        return int(_setting(template, resources[function]["Properties"], "MemorySize")) / 1024

    # (function, what it waits for, invocations per order, venue wait per invocation)
    invocations_of = [
        ("ApiFunction", "POST /api/orders/execute", 1, 0.0),
        ("RouteFunction", "the slower of two quotes", 1, _slower_of_two(LATENCY["quote"])),
        ("BuildFunction", "build", 1, _mean(LATENCY["build"])),
        ("SubmitFunction", "submit", 1, _mean(LATENCY["submit"])),
        ("ConfirmFunction", "the swap's result", 1, _mean(CONFIRM_SECONDS)),
        ("NotifierFunction", "one pass per notify message", per_topic["notify"], 0.0),
    ]
    lines = [
        "| function (waits for) | invocations | venue wait (s) | + engine (s) | memory (MB) "
        "| GB-s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    gb_seconds = 0.0
    invocations = 0
    for function, what, count, wait in invocations_of:
        used = count * (wait + OVERHEAD_SECONDS) * memory_gb(function)
        gb_seconds += used
        invocations += count
        lines.append(
            f"| {function} ({what}) | {count} | {wait:.3f} | {OVERHEAD_SECONDS:.3f} "
            f"| {int(memory_gb(function) * 1024)} | {used:.4f} |"
        )
    lines.append(f"| **per order** | **{invocations}** | | | | **{gb_seconds:.4f}** |")

    sqs_requests = 3 * messages  # a send, a receive and a delete each, at worst
    emf_bytes = emf_bytes_per_order(per_topic["notify"])
    ws_messages = 1 + events  # the snapshot on subscribing, then each later event
    million = 1_000_000
    costs = [
        (
            "Lambda compute",
            f"{gb_seconds:.4f} GB-s x 1M x {_usd(LAMBDA_PER_GB_SECOND)}",
            gb_seconds * million * LAMBDA_PER_GB_SECOND,
        ),
        (
            "Lambda requests",
            f"{invocations} x {_usd(LAMBDA_PER_MILLION_REQUESTS)}/M",
            invocations * LAMBDA_PER_MILLION_REQUESTS,
        ),
        (
            "SQS requests",
            f"{messages} messages x 3 requests x {_usd(SQS_PER_MILLION_REQUESTS)}/M",
            sqs_requests * SQS_PER_MILLION_REQUESTS,
        ),
        (
            "REST API requests",
            f"1 request x {_usd(REST_API_PER_MILLION_REQUESTS)}/M",
            REST_API_PER_MILLION_REQUESTS,
        ),
        (
            "WebSocket messages",
            f"{ws_messages} messages x {_usd(WEBSOCKET_PER_MILLION_MESSAGES)}/M",
            ws_messages * WEBSOCKET_PER_MILLION_MESSAGES,
        ),
        (
            "WebSocket connection minutes",
            f"{CONNECTION_MINUTES_PER_ORDER} minute x "
            f"{_usd(WEBSOCKET_PER_MILLION_CONNECTION_MINUTES)}/M",
            CONNECTION_MINUTES_PER_ORDER * WEBSOCKET_PER_MILLION_CONNECTION_MINUTES,
        ),
        (
            "CloudWatch Logs, the metrics' EMF lines",
            f"{emf_bytes} bytes x 1M x {_usd(LOGS_PER_GB_INGESTED)}/GB",
            emf_bytes * million / 1e9 * LOGS_PER_GB_INGESTED,
        ),
    ]
    lines += [
        "",
        f"Messages per order: {', '.join(f'{n} {t}' for t, n in sorted(per_topic.items()))} "
        f"({messages}); events after creation: {events}.",
        "",
        "| item | arithmetic | USD per million orders |",
        "|---|---|---:|",
    ]
    total = 0.0
    for item, arithmetic, usd in costs:
        total += usd
        lines.append(f"| {item} | {arithmetic} | {usd:.2f} |")
    lines.append(f"| **total** | | **{total:.2f}** |")
    return "\n".join(lines)


def at_rest_table(template: dict[str, Any]) -> str:
    resources = template["Resources"].values()
    alarms = sum(r["Type"] == "AWS::CloudWatch::Alarm" for r in resources)
    dashboards = sum(r["Type"] == "AWS::CloudWatch::Dashboard" for r in resources)
    rows = [
        ("CloudWatch alarms", f"{alarms} x {_usd(ALARM_PER_MONTH)}", alarms * ALARM_PER_MONTH),
        (
            "CloudWatch dashboard",
            f"{dashboards} x {_usd(DASHBOARD_PER_MONTH)} (an account's first 3 are free)",
            dashboards * DASHBOARD_PER_MONTH,
        ),
        ("Secrets Manager secret", f"1 x {_usd(SECRET_PER_MONTH)}", SECRET_PER_MONTH),
        (
            "the engine's custom metrics, once each has been written in the month",
            f"{metric_series()} series x {_usd(CUSTOM_METRIC_PER_MONTH)}",
            metric_series() * CUSTOM_METRIC_PER_MONTH,
        ),
    ]
    lines = ["| item | arithmetic | USD per month |", "|---|---|---:|"]
    lines += [f"| {item} | {arithmetic} | {usd:.2f} |" for item, arithmetic, usd in rows]
    lines.append(f"| **total** | | **{sum(usd for _, _, usd in rows):.2f}** |")
    return "\n".join(lines)


def main() -> None:
    template = _template()
    print("## Sizing\n")
    print(sizing_table(template))
    print("\n## Cost per million orders\n")
    print(cost_table(template))
    print("\n## At rest\n")
    print(at_rest_table(template))


if __name__ == "__main__":
    main()
