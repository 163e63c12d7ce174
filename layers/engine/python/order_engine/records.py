"""What the store reads and writes: immutable rows, and the results of its operations.

Every record is a frozen dataclass built from a database row. `to_dict()` gives the
JSON form for the APIs: camelCase keys like the order request, decimals as plain
strings (never floats), timestamps in ISO 8601. The JSON an order keeps between steps
(its route, its events' data) is the venues' own form, snake_case; `camel_case_keys`
turns it into the public one, rows written before included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple
from uuid import UUID

from order_engine.orders import Status
from order_engine.tokens import Token, get_token


def prefixed(row: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The columns of `row` named `prefix`…, without it: one record's part of a row
    that joins several (e.g. `event_seq` -> `seq`)."""
    return {name[len(prefix) :]: value for name, value in row.items() if name.startswith(prefix)}


class Outcome(StrEnum):
    """What a conditional transition did; the caller's reaction depends on it."""

    APPLIED = "applied"  # the state changed; its event and outbox rows were written
    DUPLICATE = "duplicate"  # already at or past the target (or failed): ack, do nothing
    OUT_OF_ORDER = "out_of_order"  # the order has not reached `from` yet: retry later
    ILLEGAL = "illegal"  # the state machine forbids this transition: a bug, log and ack
    NOT_FOUND = "not_found"  # no such order


@dataclass(frozen=True)
class OutboxMessage:
    """A message to publish once the transaction that wrote it commits.

    `dedupe_key` makes writing it idempotent (e.g. f"{order_id}:{topic}:{to_status}"):
    a second message with the same key is silently not written.
    """

    topic: str
    payload: Mapping[str, Any]
    dedupe_key: str


@dataclass(frozen=True)
class OutboxRow:
    """An outbox message as stored; `id` is what mark_sent() takes."""

    id: int
    order_id: UUID
    topic: str
    payload: Mapping[str, Any]
    dedupe_key: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OutboxRow:
        return cls(
            id=row["id"],
            order_id=row["order_id"],
            topic=row["topic"],
            payload=row["payload"],
            dedupe_key=row["dedupe_key"],
            attempts=row["attempts"],
            created_at=row["created_at"],
            sent_at=row["sent_at"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "orderId": str(self.order_id),
            "topic": self.topic,
            "payload": dict(self.payload),
            "dedupeKey": self.dedupe_key,
            "attempts": self.attempts,
            "createdAt": _iso(self.created_at),
            "sentAt": _iso(self.sent_at),
        }


@dataclass(frozen=True)
class Order:
    id: UUID
    status: Status
    version: int
    type: str
    token_in: Token
    token_out: Token
    amount: Decimal
    slippage_bps: int
    request: Mapping[str, Any]
    route: Mapping[str, Any] | None
    transaction: Mapping[str, Any] | None
    tx_signature: str | None
    amount_out: Decimal | None
    executed_price: Decimal | None
    attempts: int
    last_error: str | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    # A limit order's price and expiry (None for a market order).
    limit_price: Decimal | None = None
    expires_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Order:
        values = {name: row[name] for name in cls.__dataclass_fields__ if name in row}
        values["status"] = Status(row["status"])
        # Stored as symbols; only validated (known) tokens are ever written.
        values["token_in"] = get_token(row["token_in"])
        values["token_out"] = get_token(row["token_out"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The public view. The signed transaction itself stays internal (its
        signature is public); last_error explains retries in progress. limitPrice and
        expiresAt are a limit order's (null for a market order)."""
        return {
            "id": str(self.id),
            "status": self.status.value,
            "version": self.version,
            "type": self.type,
            "tokenIn": self.token_in.symbol,
            "tokenOut": self.token_out.symbol,
            "amount": _dec(self.amount),
            "slippageBps": self.slippage_bps,
            "route": None if self.route is None else camel_case_keys(self.route),
            "txSignature": self.tx_signature,
            "amountOut": _dec(self.amount_out),
            "executedPrice": _dec(self.executed_price),
            "attempts": self.attempts,
            "lastError": self.last_error,
            "failureReason": self.failure_reason,
            "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at),
            "limitPrice": _dec(self.limit_price),
            "expiresAt": _iso(self.expires_at),
        }


@dataclass(frozen=True)
class OrderEvent:
    """One applied transition; `seq` is 1 for pending and gap-free per order."""

    order_id: UUID
    seq: int
    from_status: Status | None
    to_status: Status
    data: Mapping[str, Any]
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OrderEvent:
        return cls(
            order_id=row["order_id"],
            seq=row["seq"],
            from_status=None if row["from_status"] is None else Status(row["from_status"]),
            to_status=Status(row["to_status"]),
            data=row["data"],
            created_at=row["created_at"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "orderId": str(self.order_id),
            "seq": self.seq,
            "from": None if self.from_status is None else self.from_status.value,
            "status": self.to_status.value,
            "data": camel_case_keys(self.data),
            "at": _iso(self.created_at),
        }


@dataclass(frozen=True)
class CreatedOrder:
    """create_order's answer. `created` is False for an idempotent replay, which
    wrote nothing (so `event` is None and `outbox` is empty)."""

    order: Order
    created: bool
    event: OrderEvent | None = None
    # The outbox rows this call wrote, to publish right after commit (the fast path).
    outbox: list[OutboxRow] = field(default_factory=list)


class Delivery(NamedTuple):
    connection_id: str
    last_seq: int
    events: list[OrderEvent]  # seq > last_seq, ascending; may be empty


@dataclass(frozen=True)
class DueDeliveries:
    """What every subscriber of one order lacks, as read by one statement."""

    # The order, read only when a subscriber is due its snapshot (a first delivery);
    # None otherwise: live events need no more than the events.
    order: Order | None
    pending: list[Delivery]


@dataclass(frozen=True)
class TransitionResult:
    outcome: Outcome
    order: Order | None  # the row after the transition, or as found when not applied
    event: OrderEvent | None = None  # the new event, only when applied
    # The outbox rows written with the transition (none unless applied; a message
    # whose dedupe_key already existed is not written again, so not listed).
    outbox: list[OutboxRow] = field(default_factory=list)
    # What the order's subscribers lack, read by the transition's own statement when
    # each of them lacks only the new event (or there are none); None when applied
    # otherwise, or when the statement could not know every subscriber (store.py,
    # `_SUBSCRIBERS`): then they are read anew (SubscriptionStore.due_deliveries).
    due: DueDeliveries | None = None

    @property
    def applied(self) -> bool:
        return self.outcome is Outcome.APPLIED


def camel_case_keys(value: Any) -> Any:
    """`value` with every object key, at any depth, in camelCase ("amount_in" ->
    "amountIn"); values are left as they are."""
    if isinstance(value, Mapping):
        return {_camel(str(key)): camel_case_keys(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [camel_case_keys(item) for item in value]
    return value


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
