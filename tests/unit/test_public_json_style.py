"""One public JSON style: every key of every answer the APIs give is camelCase. Here
the documented examples and the engine's own JSON of an order routed over both venues
(one quoting, one failing); tests/e2e/test_field_types_over_sockets.py walks what the
real sockets answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from order_engine.dex.router import QuoteOutcome, RouteDecision, Router
from order_engine.dex.simulation import simulated_venues
from order_engine.notify import accepted_message, event_message, snapshot_message
from order_engine.orders import Status
from order_engine.records import Order, OrderEvent
from order_engine.settings import DexSettings
from order_engine.tokens import get_token
from tests.support.json_style import snake_case_keys
from tests.unit.test_openapi import document, resolve

NOW = datetime(2026, 12, 4, 13, 0, tzinfo=UTC)


def documented_examples() -> Iterator[tuple[str, Any]]:
    """(where, value) of every example of every documented response."""
    for path, entries in document()["paths"].items():
        for method, operation in entries.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, response in operation["responses"].items():
                for media, content in resolve(response).get("content", {}).items():
                    where = f"{method.upper()} {path} {status} {media}"
                    if "example" in content:
                        yield where, content["example"]
                    for name, example in content.get("examples", {}).items():
                        yield f"{where} {name}", resolve(example)["value"]


def test_the_document_has_response_examples_to_walk() -> None:
    wheres = [where for where, _ in documented_examples()]
    assert any("GET /api/orders/{order_id} 200" in where for where in wheres)
    assert len(wheres) >= 10


@pytest.mark.parametrize(("where", "example"), list(documented_examples()))
def test_every_documented_answer_is_camel_case(where: str, example: Any) -> None:
    assert snake_case_keys(example) == [], where


def routed_order() -> tuple[Order, list[OrderEvent]]:
    with Router(simulated_venues(DexSettings(latency_scale=0, seed=7)), quote_timeout=1) as r:
        decision = r.route(get_token("SOL"), get_token("USDC"), Decimal("1.5"), 100)
    # One venue failing, so an outcome without a quote (and with its error's code) shows.
    failed = QuoteOutcome(venue="meteora", quote=None, error="timed out", error_code="timeout")
    decision = RouteDecision(**{**vars(decision), "quotes": (decision.quotes[0], failed)})
    order_id = uuid.uuid4()
    order = Order(
        id=order_id,
        status=Status.ROUTING,
        version=2,
        type="market",
        token_in=get_token("SOL"),
        token_out=get_token("USDC"),
        amount=Decimal("1.5"),
        slippage_bps=100,
        request={},
        route=decision.to_dict(),  # as the route step stores it
        transaction=None,
        tx_signature=None,
        amount_out=None,
        executed_price=None,
        attempts=1,
        last_error=None,
        failure_reason=None,
        created_at=NOW,
        updated_at=NOW,
    )
    events = [
        OrderEvent(order_id, 1, None, Status.PENDING, {}, NOW),
        OrderEvent(order_id, 2, Status.PENDING, Status.ROUTING, decision.to_dict(), NOW),
    ]
    return order, events


def test_an_order_with_its_route_and_events_is_camel_case() -> None:
    order, events = routed_order()
    answers: list[Any] = [
        {**order.to_dict(), "events": [event.to_dict() for event in events]},
        snapshot_message(order, events),
        event_message(order.id, events[-1]),
        accepted_message(order.id),
    ]
    assert order.to_dict()["route"]["quotes"][1]["errorCode"] == "timeout"
    for answer in answers:
        assert snake_case_keys(answer) == []
