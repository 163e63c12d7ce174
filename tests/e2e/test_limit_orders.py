"""Limit orders over real sockets, against template.yaml on the local runtime: the price
watch (a function on its own SQS tick) fires them into the market flow, or lets them
expire."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from order_engine_cli.client import OrderClient
from tests.support.stack import statuses_of


def limit_order(limit_price: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "limit",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "1.5",
        "limitPrice": limit_price,
        "slippageBps": 500,  # wide: these tests are about the watch, not about drift
        **fields,
    }


def place_and_follow(
    client: OrderClient, order: dict[str, Any]
) -> tuple[str, list[dict[str, Any]]]:
    placed = client.place(order)
    assert placed["status"] == "pending"
    return placed["orderId"], asyncio.run(statuses_of(placed["wsUrl"], client.api_key, 40))


def test_a_limit_order_whose_limit_is_met_triggers_and_confirms_at_or_above_its_limit(
    client: OrderClient,
) -> None:
    # SOL trades near 150 USDC: a limit of 120 is met at the watch's first tick.
    order_id, events = place_and_follow(client, limit_order("120"))

    assert [e["status"] for e in events] == [
        "pending", "watching", "routing", "building", "submitted", "confirmed",
    ]  # fmt: skip
    trigger = events[2]["data"]["trigger"]
    assert Decimal(trigger["price"]) >= Decimal("120")
    assert trigger["venue"] in {"raydium", "meteora"} and trigger["tick"] >= 1
    assert Decimal(events[2]["data"]["limitFloor"]) == Decimal("180")  # 1.5 SOL x 120
    order = client.get(order_id)
    assert order["status"] == "confirmed"
    assert order["limitPrice"] == "120"
    assert Decimal(order["executedPrice"]) >= Decimal("120")
    assert Decimal(order["amountOut"]) >= Decimal("180")


def test_a_limit_order_whose_limit_is_never_met_ends_expired_with_its_reason(
    client: OrderClient,
) -> None:
    expires_at = datetime.now(UTC) + timedelta(seconds=4)
    order_id, events = place_and_follow(
        client, limit_order("1000", expiresAt=expires_at.isoformat())
    )

    assert [e["status"] for e in events] == ["pending", "watching", "expired"]
    reason = events[-1]["data"]["reason"]
    assert "limit price 1000 USDC per SOL not reached" in reason
    order = client.get(order_id)
    assert order["status"] == "expired"
    assert order["failureReason"] == reason
    assert order["txSignature"] is None and order["route"] is None
    assert datetime.fromisoformat(order["expiresAt"]) == expires_at.replace(
        microsecond=expires_at.microsecond
    )
