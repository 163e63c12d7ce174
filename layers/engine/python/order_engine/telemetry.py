"""What an operator watches besides logs: CloudWatch metrics (EMF) and X-Ray traces.

Metrics are CloudWatch Embedded Metric Format lines on stdout, built by Powertools'
EMF provider: on Lambda, CloudWatch Logs turns each line into metrics in the
`OrderEngine` namespace (template.yaml's dashboard shows them); locally, the runtime can
collect the same lines. Each line is one metric, written whole under a lock, because the
records of a batch run on threads (consumers.py). Dimensions are few and bounded (step,
venue, failure reason); an order's id is never one (a metric per order would be a
CloudWatch series per order): it rides along as a property of the line, so Logs
Insights still finds an order's metrics. POWERTOOLS_METRICS_DISABLED=true silences them.

Tracing is on only where template.yaml's `Tracing` parameter turns it on: Lambda with
active tracing and POWERTOOLS_TRACE_DISABLED=false. Everywhere else no tracer is built
at all, and a span costs nothing: a Powertools Tracer, even a disabled one, imports and
starts the X-Ray SDK, whose sampler builds a botocore client of its own, about 100 ms
of CPU in every cold start (each sandbox's, each Lambda container's). When on,
botocore is patched (every SQS, API Gateway and Secrets Manager call is a subsegment),
and each step is a subsegment annotated with its order id, so X-Ray finds an order's
trace by `annotation.order_id`. In Lambda every thread of a batch joins the
invocation's trace by itself: the X-Ray SDK builds each thread's parent from the
invocation's trace header.

The engine calls the small functions below at the points where things happen; they
decide what is measured and how.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)

from order_engine.observability import SERVICE
from order_engine.orders import Status, Step

if TYPE_CHECKING:
    from order_engine.records import Order

NAMESPACE = "OrderEngine"


def _tracer() -> Tracer | None:
    """Powertools' Tracer where tracing is on (Powertools' own rule says where), patching
    botocore at init as Lambda's init should; None where it is off."""
    if Tracer._is_tracer_disabled():
        return None
    return Tracer(service=SERVICE, patch_modules=["botocore"])


tracer = _tracer()
_write = threading.Lock()


def emit(
    name: str,
    value: float,
    unit: MetricUnit = MetricUnit.Count,
    *,
    order_id: uuid.UUID | None = None,
    **dimensions: str,
) -> None:
    """Write one metric as one EMF line; `order_id` is a property, never a dimension."""
    if is_metrics_disabled():
        return
    metric = AmazonCloudWatchEMFProvider(namespace=NAMESPACE, service=SERVICE)
    metric.add_metric(name=name, unit=unit, value=value)
    for dimension, dimension_value in dimensions.items():
        metric.add_dimension(name=dimension, value=dimension_value)
    if order_id is not None:
        metric.add_metadata(key="order_id", value=str(order_id))
    line = json.dumps(metric.serialize_metric_set(), separators=(",", ":")) + "\n"
    with _write:
        sys.stdout.write(line)
        sys.stdout.flush()


@contextmanager
def step_span(step: str, order_id: uuid.UUID) -> Iterator[None]:
    """One step of one order: its duration (StepDuration by step), and an X-Ray
    subsegment `## <step>` when tracing is on."""
    started = time.perf_counter()
    try:
        with _subsegment(f"## {step}", order_id):
            yield
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        emit("StepDuration", elapsed_ms, MetricUnit.Milliseconds, order_id=order_id, step=step)


@contextmanager
def _subsegment(name: str, order_id: uuid.UUID) -> Iterator[None]:
    if tracer is None:
        yield
        return
    with tracer.provider.in_subsegment(name) as subsegment:
        subsegment.put_annotation("order_id", str(order_id))
        yield


def order_placed(order_id: uuid.UUID) -> None:
    emit("OrdersPlaced", 1, order_id=order_id)


def order_moved(order: Order) -> None:
    """An applied transition: the venue chosen when routed; confirmation and slippage."""
    # The pipeline's alone to call, which has imported the router already; imported
    # here, it would weigh on the cold start of every function that emits a metric.
    from order_engine.dex.router import RouteDecision

    if order.status is Step.ROUTE.to_status and order.route is not None:
        venue = RouteDecision.from_dict(order.route).venue
        emit("VenueChosen", 1, order_id=order.id, venue=venue)
    elif order.status is Status.CONFIRMED:
        emit("OrdersConfirmed", 1, order_id=order.id)
        if order.route is not None and order.executed_price is not None:
            quoted = RouteDecision.from_dict(order.route).quote.price
            if quoted > 0:
                # Positive: worse than quoted (less out per unit in).
                slippage = (quoted - order.executed_price) / quoted * Decimal(10_000)
                emit("SlippageBps", float(slippage), MetricUnit.NoUnit, order_id=order.id)


def order_failed(order_id: uuid.UUID, reason: str) -> None:
    """`reason`: the error's code (slippage_exceeded, venue_timeout…), a bounded set."""
    emit("OrdersFailed", 1, order_id=order_id, reason=reason)


def outbox_relayed(rows: int) -> None:
    if rows:
        emit("OutboxRowsRelayed", rows)


def notifier_pass(order_id: uuid.UUID, *, delivered: int, gone: int) -> None:
    if delivered:
        emit("NotificationsDelivered", delivered, order_id=order_id)
    if gone:
        emit("ConnectionsGone", gone, order_id=order_id)
