"""Validation of a market-order request: the one place that says what a valid order is.

Schema (JSON object, no other fields allowed):

    type         "market" or "limit"           required
    tokenIn      symbol or mint address        required, a known token
    tokenOut     symbol or mint address        required, a known token, not tokenIn
    amount       decimal string or number      required, > 0, at most tokenIn's decimals,
                                               at most tokenIn's max_amount; a string is
                                               ASCII digits with at most one point

    slippageBps  integer, basis points         optional, 1..1000 (0.01 % .. 10 %), default 100

A limit order ("type": "limit") also has:

    limitPrice   decimal string or number      required: the least tokenOut per tokenIn
                                               accepted, net of venue fees; > 0, at most
                                               12 decimals, below 1e9
    expiresAt    ISO 8601 time with a zone     optional: when it stops waiting; not in the
                                               past, at most 7 days ahead (the default)

Every rejection is a `ValidationError` naming the field. Amounts are `Decimal`
end to end: parse request bodies with `parse_json` so numbers never pass through float.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from order_engine.errors import MalformedRequest, ValidationError
from order_engine.tokens import Token, find_token

ORDER_TYPES = frozenset({"market", "limit"})
FIELDS = frozenset({"type", "tokenIn", "tokenOut", "amount", "slippageBps"})
LIMIT_FIELDS = frozenset({"limitPrice", "expiresAt"})
# How long a limit order may wait, and how long it waits when expiresAt is absent.
MAX_LIMIT_WAIT = timedelta(days=7)
# A price with more places than this is noise; one of 1e9 or more no pair comes near.
LIMIT_PRICE_DECIMALS = 12
MAX_LIMIT_PRICE = Decimal("1e9")
DEFAULT_SLIPPAGE_BPS = 100
MIN_SLIPPAGE_BPS = 1
MAX_SLIPPAGE_BPS = 1000
# Longer strings are never a sensible amount or token; refusing them early keeps
# error messages short and Decimal parsing cheap.
MAX_SCALAR_CHARS = 64
# ASCII digits with at most one point. Decimal() alone also reads "1_5" and "1__5" as 15
# and full-width or Arabic-Indic digits as their values, so a typo could buy 10x the
# amount; exponents and signs are refused too, since nobody types them for an amount.
_DECIMAL_STRING = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


@dataclass(frozen=True)
class OrderRequest:
    token_in: Token
    token_out: Token
    amount: Decimal
    slippage_bps: int = DEFAULT_SLIPPAGE_BPS
    type: str = "market"
    # A limit order's: its price, and its expiry as the client gave it (None: the
    # default, MAX_LIMIT_WAIT after it is written; kept None so a retry with the same
    # idempotency key a second later is still the same request).
    limit_price: Decimal | None = None
    expires_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON form: symbols, amount as a plain decimal string."""
        canonical: dict[str, Any] = {
            "type": self.type,
            "tokenIn": self.token_in.symbol,
            "tokenOut": self.token_out.symbol,
            "amount": format(self.amount, "f"),
            "slippageBps": self.slippage_bps,
        }
        if self.limit_price is not None:
            canonical["limitPrice"] = format(self.limit_price, "f")
        if self.expires_at is not None:
            canonical["expiresAt"] = self.expires_at.isoformat()
        return canonical

    def fingerprint(self) -> str:
        """A digest of the canonical form, to tell an idempotent retry from a new request."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def parse_json(raw: str | bytes) -> Any:
    """Parse a request body: numbers as Decimal, NaN and Infinity refused."""

    def refuse_constant(name: str) -> Any:
        raise MalformedRequest(f"{name} is not valid JSON")

    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise MalformedRequest(f"body is not valid JSON: {exc}") from None
    except RecursionError:  # `[[[[…` thousands deep: the decoder recurses once per level
        raise MalformedRequest("body is nested too deeply") from None


def validate_order_request(data: Any) -> OrderRequest:
    """Check `data` (a parsed JSON value) against the schema; raise on the first problem."""
    if not isinstance(data, dict):
        raise MalformedRequest("the order must be a JSON object")
    order_type = data.get("type")
    allowed = FIELDS | LIMIT_FIELDS if order_type == "limit" else FIELDS
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}", field=unknown[0])

    order_type = _required(data, "type")
    # Checked as a string first: `{}` or `[]` is unhashable, so a bare `in` would raise.
    if not isinstance(order_type, str) or order_type not in ORDER_TYPES:
        raise ValidationError('type must be "market" or "limit"', field="type")

    token_in = _token(data, "tokenIn")
    token_out = _token(data, "tokenOut")
    if token_in == token_out:
        raise ValidationError("tokenOut must differ from tokenIn", field="tokenOut")

    amount = _amount(_required(data, "amount"), token_in)
    slippage_bps = _slippage(data.get("slippageBps", DEFAULT_SLIPPAGE_BPS))
    if order_type == "market":
        return OrderRequest(token_in, token_out, amount, slippage_bps)
    expires_at = data.get("expiresAt")
    return OrderRequest(
        token_in,
        token_out,
        amount,
        slippage_bps,
        type="limit",
        limit_price=_limit_price(_required(data, "limitPrice")),
        expires_at=None if expires_at is None else _expiry(expires_at),
    )


def _limit_price(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ValidationError("limitPrice must be a decimal string or a number", field="limitPrice")
    text = value if isinstance(value, str) else str(value)
    if (
        not text
        or len(text) > MAX_SCALAR_CHARS
        or (isinstance(value, str) and not _DECIMAL_STRING.fullmatch(value))
    ):
        raise ValidationError(
            "limitPrice must be ASCII digits with at most one decimal point", field="limitPrice"
        )
    price = Decimal(text)  # a fullmatch or an int/Decimal from parse_json: finite
    if not price.is_finite() or price <= 0:
        raise ValidationError("limitPrice must be greater than zero", field="limitPrice")
    if price >= MAX_LIMIT_PRICE:
        raise ValidationError(
            f"limitPrice must be below {MAX_LIMIT_PRICE:f}, no pair trades near it",
            field="limitPrice",
        )
    if _decimal_places(price) > LIMIT_PRICE_DECIMALS:
        raise ValidationError(
            f"limitPrice has more than {LIMIT_PRICE_DECIMALS} decimals", field="limitPrice"
        )
    return price.normalize()


def _expiry(value: Any, now: datetime | None = None) -> datetime:
    if not isinstance(value, str) or len(value) > MAX_SCALAR_CHARS:
        raise ValidationError("expiresAt must be an ISO 8601 time string", field="expiresAt")
    try:
        expires_at = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"expiresAt {value!r} is not an ISO 8601 time", field="expiresAt"
        ) from None
    if expires_at.tzinfo is None:
        raise ValidationError(
            "expiresAt needs a time zone (e.g. 2026-12-05T12:00:00Z)", field="expiresAt"
        )
    now = now or datetime.now(UTC)
    if expires_at <= now:
        raise ValidationError("expiresAt is in the past", field="expiresAt")
    if expires_at > now + MAX_LIMIT_WAIT:
        raise ValidationError(
            f"expiresAt is more than {MAX_LIMIT_WAIT.days} days ahead", field="expiresAt"
        )
    return expires_at.astimezone(UTC)


def _required(data: dict[str, Any], field: str) -> Any:
    if field not in data or data[field] is None:
        raise ValidationError(f"{field} is required", field=field)
    return data[field]


def _token(data: dict[str, Any], field: str) -> Token:
    value = _required(data, field)
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a token symbol or mint address", field=field)
    if len(value) > MAX_SCALAR_CHARS or "\x00" in value:
        raise ValidationError(f"{field} is not a known token", field=field)
    token = find_token(value)
    if token is None:
        raise ValidationError(f"{field} {value!r} is not a known token", field=field)
    return token


def _amount(value: Any, token: Token) -> Decimal:
    # bool is an int in Python; `true` is never an amount.
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal, float)):
        raise ValidationError("amount must be a decimal string or a number", field="amount")
    text = value if isinstance(value, str) else str(value)
    if not text or len(text) > MAX_SCALAR_CHARS:
        raise ValidationError("amount must be a decimal string or a number", field="amount")
    if isinstance(value, str) and not _DECIMAL_STRING.fullmatch(value):
        raise ValidationError(
            f"amount {value!r} must be ASCII digits with at most one decimal point",
            field="amount",
        )
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValidationError(f"amount {text!r} is not a number", field="amount") from None
    if not amount.is_finite():
        raise ValidationError("amount must be a finite number", field="amount")
    if amount <= 0:
        raise ValidationError("amount must be greater than zero", field="amount")
    if amount > token.max_amount:
        raise ValidationError(
            f"amount exceeds the largest order of {token.max_amount} {token.symbol}",
            field="amount",
        )
    if _decimal_places(amount) > token.decimals:
        raise ValidationError(
            f"amount has more than {token.decimals} decimals, the precision of {token.symbol}",
            field="amount",
        )
    # Exact now: at most max_amount with at most `decimals` places is far fewer digits
    # than the context's precision, so normalize() only drops trailing zeros.
    return amount.normalize()


def _decimal_places(amount: Decimal) -> int:
    """The decimal places `amount` really has, trailing zeros aside. Read off its digits,
    not through normalize(), which rounds to the context (28 digits, exponent >= -999999):
    "1e-999999999" would become 0 and "1.0000000000000000000000000001" would become 1."""
    _, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite numbers have an integer exponent
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing_zeros))


def _slippage(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValidationError("slippageBps must be an integer", field="slippageBps")
    # The range is checked on the number as parsed, before int(): int(Decimal("1e999999999"))
    # builds a billion-digit integer, minutes of CPU with the GIL held.
    if not MIN_SLIPPAGE_BPS <= value <= MAX_SLIPPAGE_BPS:
        raise ValidationError(
            f"slippageBps must be between {MIN_SLIPPAGE_BPS} and {MAX_SLIPPAGE_BPS}",
            field="slippageBps",
        )
    if isinstance(value, Decimal) and value != value.to_integral_value():
        raise ValidationError("slippageBps must be an integer", field="slippageBps")
    return int(value)
