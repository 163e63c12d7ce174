"""What a valid limit order is, and that every bad one is refused naming its field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from order_engine.errors import ValidationError
from order_engine.order_request import MAX_LIMIT_WAIT, parse_json, validate_order_request

LIMIT = {
    "type": "limit",
    "tokenIn": "SOL",
    "tokenOut": "USDC",
    "amount": "1.5",
    "limitPrice": "160",
    "slippageBps": 50,
}


def limit(**changes: Any) -> dict[str, Any]:
    body = dict(LIMIT, **changes)
    return {key: value for key, value in body.items() if value is not ...}


def ahead(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def test_the_issue_example_is_a_limit_order_with_its_price_and_expiry() -> None:
    expires = datetime.now(UTC) + timedelta(days=1)
    request = validate_order_request(limit(expiresAt=expires.isoformat().replace("+00:00", "Z")))
    assert request.type == "limit"
    assert request.limit_price == Decimal("160")
    assert request.expires_at == expires
    assert request.to_dict()["limitPrice"] == "160"


def test_expires_at_may_be_left_out_and_stays_out_of_the_fingerprint() -> None:
    request = validate_order_request(LIMIT)
    assert request.expires_at is None
    assert "expiresAt" not in request.to_dict()
    assert request.fingerprint() == validate_order_request(dict(LIMIT)).fingerprint()


def test_limit_price_may_be_a_json_number_read_as_a_decimal() -> None:
    body = '{"type":"limit","tokenIn":"USDC","tokenOut":"SOL","amount":"10","limitPrice":0.0065}'
    assert validate_order_request(parse_json(body)).limit_price == Decimal("0.0065")


def test_a_market_order_is_what_it_was() -> None:
    market = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}
    request = validate_order_request(market)
    assert request.limit_price is None and request.expires_at is None
    assert request.to_dict() == {**market, "slippageBps": 100}


BAD_LIMITS: list[tuple[str, dict[str, Any], str]] = [
    ("no limitPrice", limit(limitPrice=...), "limitPrice"),
    ("limitPrice zero", limit(limitPrice="0"), "limitPrice"),
    ("limitPrice negative", limit(limitPrice="-160"), "limitPrice"),
    ("limitPrice negative number", limit(limitPrice=Decimal("-1")), "limitPrice"),
    ("limitPrice with 13 decimals", limit(limitPrice="0.0000000000001"), "limitPrice"),
    ("limitPrice absurd", limit(limitPrice="1000000000"), "limitPrice"),
    ("limitPrice absurd number", limit(limitPrice=Decimal("1e30")), "limitPrice"),
    ("limitPrice not a number", limit(limitPrice="cheap"), "limitPrice"),
    ("limitPrice an exponent", limit(limitPrice="1e3"), "limitPrice"),
    ("limitPrice a bool", limit(limitPrice=True), "limitPrice"),
    ("limitPrice an object", limit(limitPrice={}), "limitPrice"),
    ("expiresAt in the past", limit(expiresAt="2020-01-01T00:00:00Z"), "expiresAt"),
    # A day past the limit: the case is built when the module is collected, minutes
    # before it runs in a full suite.
    ("expiresAt too far ahead", limit(expiresAt=ahead(days=8)), "expiresAt"),
    ("expiresAt not ISO 8601", limit(expiresAt="next tuesday"), "expiresAt"),
    ("expiresAt without a zone", limit(expiresAt="2026-12-05T12:00:00"), "expiresAt"),
    ("expiresAt a number", limit(expiresAt=1796472000), "expiresAt"),
    ("an unknown field", limit(stopPrice="150"), "stopPrice"),
]


@pytest.mark.parametrize(
    ("body", "field"), [(b, f) for _, b, f in BAD_LIMITS], ids=[i for i, _, _ in BAD_LIMITS]
)
def test_a_bad_limit_order_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        validate_order_request(body)
    assert refused.value.field == field


def test_expires_at_up_to_the_maximum_wait_is_accepted() -> None:
    almost = MAX_LIMIT_WAIT - timedelta(minutes=1)
    assert validate_order_request(limit(expiresAt=ahead(seconds=almost.total_seconds())))
