"""The engine's metrics (CloudWatch EMF lines on stdout), over one order's life through
the real handlers: what an operator's dashboard plots. An order's id travels as a
property of each line, never as a dimension (one CloudWatch series per order)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import psycopg
import pytest

from order_engine.dex.router import RouteDecision
from order_engine.dex.simulation import Fault
from order_engine.orders import Status, Step
from tests.integration.handlers.test_pipeline_handlers import SCHEDULED_EVENT, use_faults
from tests.support.handler_stack import ORDER, Stack

BOUNDED_DIMENSIONS = {"service", "step", "venue", "reason"}


def metrics(printed: str) -> list[dict[str, Any]]:
    """Every EMF line printed, as {name, value, unit, dimensions, properties}."""
    found = []
    for line in printed.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "OrderEngine"
        (dimension_names,) = directive["Dimensions"]
        for metric in directive["Metrics"]:
            (value,) = blob[metric["Name"]]
            found.append(
                {
                    "name": metric["Name"],
                    "value": value,
                    "unit": metric["Unit"],
                    "dimensions": {name: blob[name] for name in dimension_names},
                    "order_id": blob.get("order_id"),
                }
            )
    return found


def of_order(found: list[dict[str, Any]], order_id: str) -> dict[str, list[dict[str, Any]]]:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for metric in found:
        if metric["order_id"] == order_id:
            by_name.setdefault(metric["name"], []).append(metric)
    return by_name


def test_one_orders_life_emits_its_metrics_with_the_order_id_never_a_dimension(
    fresh: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    order_id = fresh.place()
    watcher = f"c-{uuid.uuid4().hex[:8]}"
    assert fresh.engine.subscriptions.subscribe(fresh.open_connection(watcher), order_id)

    order = fresh.run(order_id)

    assert order.status is Status.CONFIRMED
    found = metrics(capsys.readouterr().out)
    mine = of_order(found, order_id)
    assert [m["value"] for m in mine["OrdersPlaced"]] == [1]
    assert [m["value"] for m in mine["OrdersConfirmed"]] == [1]
    assert "OrdersFailed" not in mine
    assert order.route is not None
    decision = RouteDecision.from_dict(order.route)
    assert [m["dimensions"]["venue"] for m in mine["VenueChosen"]] == [decision.venue]
    steps = [m["dimensions"]["step"] for m in mine["StepDuration"]]
    assert sorted(steps) == sorted(step.value for step in Step)
    assert all(m["unit"] == "Milliseconds" and m["value"] >= 0 for m in mine["StepDuration"])
    assert order.executed_price is not None
    expected = (decision.quote.price - order.executed_price) / decision.quote.price * 10_000
    (slippage,) = mine["SlippageBps"]
    assert slippage["value"] == pytest.approx(float(expected))
    delivered = sum(m["value"] for m in mine["NotificationsDelivered"])
    assert delivered == len(fresh.management.messages(watcher)) >= 1

    for metric in found:
        assert set(metric["dimensions"]) <= BOUNDED_DIMENSIONS, metric
        assert order_id not in metric["dimensions"].values(), metric


def test_a_failed_order_is_counted_by_reason(
    fresh: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    use_faults(raydium=Fault.down(), meteora=Fault.down())
    order_id = fresh.place()

    assert fresh.run(order_id).status is Status.FAILED

    mine = of_order(metrics(capsys.readouterr().out), order_id)
    (failed,) = mine["OrdersFailed"]
    assert failed["dimensions"] == {"service": "order-engine", "reason": "venue_unavailable"}
    assert "OrdersConfirmed" not in mine


def test_a_gone_connection_and_the_sweepers_relay_are_counted(
    fresh: Stack, capsys: pytest.CaptureFixture[str], migrated_url: str
) -> None:
    order_id = fresh.place({**ORDER})
    gone, kept = f"c-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    for connection in (gone, kept):
        assert fresh.engine.subscriptions.subscribe(fresh.open_connection(connection), order_id)
    fresh.management.gone.add(gone)
    # The route message as if its publish had been lost an hour ago: the sweeper's job.
    # Other tests' unsent rows in the session database (some for queues since deleted,
    # which stop a relay at their batch) are made fresh, so they wait out the grace
    # period while this sweep claims only this order's row. A runtime another test
    # module left running sweeps the same database and may relay the row first; then
    # the row is lost again, until this test's sweep is the one.
    for _ in range(5):
        with psycopg.connect(migrated_url, autocommit=True) as db:
            db.execute(
                "UPDATE outbox SET created_at = now() WHERE sent_at IS NULL AND order_id <> %s",
                [order_id],
            )
            db.execute(
                "UPDATE outbox SET sent_at = NULL, created_at = now() - interval '1 hour'"
                " WHERE order_id = %s",
                [order_id],
            )
        deadline = time.monotonic() + 10  # another sweep may hold the turn for a moment
        while (answer := fresh.sweeper.sweep(SCHEDULED_EVENT, None))["skipped"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        if answer["published"]:
            break
    fresh.deliver("route")
    fresh.deliver("notify")

    found = metrics(capsys.readouterr().out)
    relayed = [m["value"] for m in found if m["name"] == "OutboxRowsRelayed"]
    # (A runtime another test module left running may sweep too, into the same stdout.)
    assert answer["published"] >= 1 and answer["published"] in relayed
    mine = of_order(found, order_id)
    assert [m["value"] for m in mine["ConnectionsGone"]] == [1]
    assert [m["value"] for m in mine["NotificationsDelivered"]] == [
        len(fresh.management.messages(kept))
    ]
