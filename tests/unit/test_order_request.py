"""What a valid market order is, and that every bad one is refused naming its field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from order_engine.errors import MalformedRequest, ValidationError
from order_engine.order_request import parse_json, validate_order_request

GOOD = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}


def order(**changes: Any) -> dict[str, Any]:
    body = dict(GOOD, **changes)
    return {key: value for key, value in body.items() if value is not ...}


def test_a_minimal_order_gets_the_default_slippage() -> None:
    request = validate_order_request(GOOD)
    assert request.token_in.symbol == "SOL"
    assert request.token_out.symbol == "USDC"
    assert request.amount == Decimal("1.5")
    assert request.slippage_bps == 100


def test_amount_may_be_a_json_number_without_passing_through_float() -> None:
    request = validate_order_request(
        parse_json('{"type":"market","tokenIn":"USDC","tokenOut":"SOL","amount":0.1}')
    )
    assert request.amount == Decimal("0.1")


def test_tokens_may_be_named_by_mint_address_or_any_case_symbol() -> None:
    request = validate_order_request(
        order(
            tokenIn="so11111111111111111111111111111111111111112".replace("s", "S", 1),
            tokenOut="usdc",
        )
    )
    assert (request.token_in.symbol, request.token_out.symbol) == ("SOL", "USDC")


def test_equal_requests_have_equal_fingerprints() -> None:
    a = validate_order_request(order(amount="1.50"))
    b = validate_order_request(order(amount=Decimal("1.5"), tokenOut="usdc"))
    c = validate_order_request(order(amount="1.6"))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


BAD_ORDERS: list[tuple[str, dict[str, Any], str]] = [
    ("missing type", order(type=...), "type"),
    ("an unknown order type", order(type="stop"), "type"),
    ("a limit order needs its limitPrice", order(type="limit"), "limitPrice"),
    ("a market order has no limitPrice", order(limitPrice="160"), "limitPrice"),
    ("type of the wrong type", order(type=1), "type"),
    ("missing tokenIn", order(tokenIn=...), "tokenIn"),
    ("unknown token", order(tokenIn="DOGE"), "tokenIn"),
    ("token as a number", order(tokenOut=5), "tokenOut"),
    ("token with a NUL", order(tokenOut="USDC\x00"), "tokenOut"),
    ("SQL in a token", order(tokenOut="'; DROP TABLE orders;--"), "tokenOut"),
    ("huge token string", order(tokenOut="A" * 10_000), "tokenOut"),
    ("the same token in and out", order(tokenOut="sol"), "tokenOut"),
    ("a long s, which str.upper() turns into S", order(tokenIn="\u017fol"), "tokenIn"),
    ("fullwidth letters", order(tokenIn="\uff33\uff2f\uff2c"), "tokenIn"),
    ("missing amount", order(amount=...), "amount"),
    ("null amount", order(amount=None), "amount"),
    ("amount as a boolean", order(amount=True), "amount"),
    ("amount as a list", order(amount=[1]), "amount"),
    ("amount as words", order(amount="one"), "amount"),
    ("empty amount", order(amount=""), "amount"),
    ("NaN amount", order(amount="NaN"), "amount"),
    ("infinite amount", order(amount="Infinity"), "amount"),
    ("float infinity", order(amount=float("inf")), "amount"),
    ("1e309", order(amount="1e309"), "amount"),
    ("zero", order(amount="0"), "amount"),
    ("negative", order(amount=-1), "amount"),
    ("more decimals than SOL has", order(amount="0.0000000001"), "amount"),
    ("tiny exponent", order(amount="1e-30"), "amount"),
    ("absurd size", order(amount="1e12"), "amount"),
    ("amount with a NUL", order(amount="1\x00"), "amount"),
    ("huge digit string", order(amount="9" * 5000), "amount"),
    # normalize() would round these into valid amounts (0 and 1): refused as written.
    ("an exponent below the context's", order(amount="1e-999999999"), "amount"),
    ("29 significant digits", order(amount="1.0000000000000000000000000001"), "amount"),
    ("slippage as a string", order(slippageBps="50"), "slippageBps"),
    ("fractional slippage", order(slippageBps=Decimal("1.5")), "slippageBps"),
    ("zero slippage", order(slippageBps=0), "slippageBps"),
    ("slippage of 50 %", order(slippageBps=5000), "slippageBps"),
    ("negative slippage", order(slippageBps=-5), "slippageBps"),
    ("slippage of a billion digits", order(slippageBps=Decimal("1e999999999")), "slippageBps"),
    ("slippage of 4000 digits", order(slippageBps=10**3999), "slippageBps"),
    ("an unknown field", order(price="100"), "price"),
    ("an emoji field", order(**{"\U0001f680": 1}), "\U0001f680"),
]


@pytest.mark.parametrize(
    ("body", "field"), [(b, f) for _, b, f in BAD_ORDERS], ids=[name for name, _, _ in BAD_ORDERS]
)
def test_a_bad_order_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        validate_order_request(body)
    assert refused.value.field == field
    assert refused.value.to_dict()["field"] == field


@pytest.mark.parametrize("body", [[], "order", 42, None])
def test_anything_but_a_json_object_is_malformed(body: Any) -> None:
    with pytest.raises(MalformedRequest):
        validate_order_request(body)


@pytest.mark.parametrize("raw", ['{"amount": NaN}', '{"amount": Infinity}', "{", b"\xff\xfe", ""])
def test_bodies_that_are_not_strict_json_are_malformed(raw: str | bytes) -> None:
    with pytest.raises(MalformedRequest):
        parse_json(raw)


def test_an_amount_keeps_its_places_and_loses_only_trailing_zeros() -> None:
    # Exponents are JSON numbers' (parsed to Decimal); a string amount is plain digits.
    assert validate_order_request(order(amount=Decimal("100e-11"))).amount == Decimal("0.000000001")
    assert str(validate_order_request(order(amount="1.500000000000")).amount) == "1.5"
    assert validate_order_request(order(amount=Decimal("1E+2"))).to_dict()["amount"] == "100"


def test_json_nested_thousands_deep_is_malformed_not_a_recursion_error() -> None:
    with pytest.raises(MalformedRequest, match="nested too deeply"):
        parse_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(MalformedRequest, match="nested too deeply"):
        parse_json('{"a":' * 100_000 + "1" + "}" * 100_000)
