"""An account's orders, newest first, a page at a time: GET /api/orders.

Keyset pagination: a page is the orders strictly older than the last one of the page
before, by (created_at, id), so orders placed while a client pages (all newer than its
first page) never shift a page, and no order is shown twice or skipped. The cursor is
that last (created_at, id) pair, opaque to clients (URL-safe base64 of JSON); a cursor
that does not decode answers 422 like any bad parameter.

Every query is scoped to the caller's account and served by the index
orders_by_account_created (migration 0004).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from order_engine.database import Repository
from order_engine.errors import ValidationError
from order_engine.order_request import ORDER_TYPES
from order_engine.orders import Status
from order_engine.records import Order

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
PARAMETERS = ("status", "type", "limit", "cursor")


@dataclass(frozen=True)
class Position:
    """Where a page ends: its last order's creation time and id."""

    created_at: datetime
    order_id: UUID

    def encode(self) -> str:
        raw = json.dumps([self.created_at.isoformat(), str(self.order_id)]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            created_at, order_id = json.loads(raw)
            position = cls(datetime.fromisoformat(created_at), UUID(order_id))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise ValidationError("cursor is not one this API gave out", field="cursor") from None
        if position.created_at.tzinfo is None:
            raise ValidationError("cursor is not one this API gave out", field="cursor")
        return position


@dataclass(frozen=True)
class PageRequest:
    """A validated GET /api/orders query."""

    status: Status | None = None
    type: str | None = None
    limit: int = DEFAULT_PAGE_SIZE
    after: Position | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str] | None) -> PageRequest:
        """Validate the query parameters; ValidationError names the first bad one."""
        query = dict(query or {})
        unknown = sorted(set(query) - set(PARAMETERS))
        if unknown:
            raise ValidationError(
                f"unknown query parameter {unknown[0]!r}; use {', '.join(PARAMETERS)}",
                field=unknown[0],
            )
        status = query.get("status")
        if status is not None and status not in {s.value for s in Status}:
            allowed = ", ".join(s.value for s in Status)
            raise ValidationError(f"status must be one of {allowed}", field="status")
        order_type = query.get("type")
        if order_type is not None and order_type not in ORDER_TYPES:
            allowed = ", ".join(sorted(ORDER_TYPES))
            raise ValidationError(f"type must be one of {allowed}", field="type")
        return cls(
            status=None if status is None else Status(status),
            type=order_type,
            limit=_limit(query.get("limit")),
            after=None if query.get("cursor") is None else Position.decode(query["cursor"]),
        )


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise ValidationError(
            f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}", field="limit"
        )
    return int(raw)


@dataclass(frozen=True)
class OrderPage:
    orders: list[Order]
    next: Position | None  # None on the last page

    def to_dict(self) -> dict[str, Any]:
        return {
            "orders": [order.to_dict() for order in self.orders],
            "nextCursor": None if self.next is None else self.next.encode(),
        }


class OrderList(Repository):
    def page(self, account_id: str, request: PageRequest) -> OrderPage:
        """One page of `account_id`'s orders matching `request`, newest first."""
        conditions = ["account_id = %(account)s"]
        params: dict[str, Any] = {"account": account_id, "limit": request.limit + 1}
        if request.status is not None:
            conditions.append("status = %(status)s")
            params["status"] = request.status.value
        if request.type is not None:
            conditions.append("type = %(type)s")
            params["type"] = request.type
        if request.after is not None:
            conditions.append("(created_at, id) < (%(created_at)s, %(id)s)")
            params["created_at"] = request.after.created_at
            params["id"] = request.after.order_id
        query = (
            "SELECT * FROM orders WHERE "
            + " AND ".join(conditions)
            + " ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
        )
        with self.database.statement() as cur:
            cur.execute(query, params)
            orders = [Order.from_row(row) for row in cur.fetchall()]
        # One row more than the page tells whether another page follows.
        if len(orders) <= request.limit:
            return OrderPage(orders, None)
        last = orders[request.limit - 1]
        return OrderPage(orders[: request.limit], Position(last.created_at, last.id))
