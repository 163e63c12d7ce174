"""The PostgreSQL repository: orders as durable state machines.

Every state change is one conditional UPDATE (`… WHERE id = %s AND status = <from>`)
committed together with its event row and the outbox rows of what must happen next
(GUIDE invariants 1, 2 and 4). When the UPDATE matches nothing, the current row is read
and the outcome classified, never guessed from an error message.

Connections/subscriptions live in subscriptions.py, the outbox and sweeper queries in
outbox.py, API keys and rate-limit counters in account_store.py; `Store` combines
them, so callers hold one object. Every order belongs to an account: reads made for a
caller pass its `account_id`, and another account's order is simply not found.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from psycopg import sql

from order_engine.account_store import AccountStore
from order_engine.database import DictCursor, fetch_one, is_uuid, jsonb
from order_engine.errors import IdempotencyConflict
from order_engine.ledger import PostgresLedger
from order_engine.order_request import OrderRequest
from order_engine.orders import Status, is_legal, progress
from order_engine.outbox import OutboxStore, write_outbox
from order_engine.records import (
    CreatedOrder,
    Order,
    OrderEvent,
    OutboxMessage,
    OutboxRow,
    Outcome,
    TransitionResult,
)
from order_engine.settings import Settings
from order_engine.subscriptions import DeliveryBatch, SubscriptionStore

__all__ = [
    "CreatedOrder",
    "DeliveryBatch",
    "Order",
    "OrderEvent",
    "OutboxMessage",
    "OutboxRow",
    "Outcome",
    "PostgresLedger",
    "Store",
    "TransitionResult",
]

# What a transition may write besides the status; anything else is a bug in the caller.
CHANGEABLE_COLUMNS = frozenset(
    {
        "route",
        "transaction",
        "tx_signature",
        "amount_out",
        "executed_price",
        "failure_reason",
        "last_error",
    }
)
_JSON_COLUMNS = frozenset({"route", "transaction"})

OutboxArg = Sequence[OutboxMessage] | Callable[[str], Sequence[OutboxMessage]]


class _KeyTaken(Exception):
    """A concurrent request committed the same Idempotency-Key first."""


class Store(SubscriptionStore, OutboxStore, AccountStore):
    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        if not settings.database_url:
            raise ValueError("DATABASE_URL is not set")
        return cls(settings.database_url, max_size=settings.db_pool_max)

    # --- orders --------------------------------------------------------------------

    def create_order(
        self,
        request: OrderRequest,
        *,
        account_id: str,
        outbox: OutboxArg,
        idempotency_key: str | None = None,
    ) -> CreatedOrder:
        """Insert `account_id`'s pending order, its first event and its outbox rows in
        one transaction.

        With an idempotency key (scoped to the account): the same key and request return
        the order created the first time (created=False, nothing written); the same key
        with another request raises IdempotencyConflict; concurrent requests with one
        key create one order. `outbox` may be a callable, given the new order's id.
        """
        fingerprint = request.fingerprint()
        # No look-up first: a new key (the common case) goes straight to the insert,
        # and a used one is found by the insert's conflict, then read.
        order_id = str(uuid.uuid4())
        messages = outbox(order_id) if callable(outbox) else outbox
        try:
            with self._transaction() as cur:
                if idempotency_key is not None:
                    # Waits for a concurrent insert of the same key; if that one
                    # commits, we get no row back and roll everything back.
                    cur.execute(
                        "INSERT INTO idempotency_keys (account_id, key, fingerprint, order_id)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT (account_id, key) DO NOTHING"
                        " RETURNING key",
                        (account_id, idempotency_key, fingerprint, order_id),
                    )
                    if cur.fetchone() is None:
                        raise _KeyTaken
                cur.execute(
                    "INSERT INTO orders (id, account_id, status, type, token_in, token_out,"
                    " amount, slippage_bps, request) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " RETURNING *",
                    (
                        order_id,
                        account_id,
                        Status.PENDING.value,
                        request.type,
                        request.token_in.symbol,
                        request.token_out.symbol,
                        request.amount,
                        request.slippage_bps,
                        jsonb(request.to_dict()),
                    ),
                )
                order = Order.from_row(fetch_one(cur))
                event = _insert_event(cur, order_id, None, Status.PENDING, {})
                rows = write_outbox(cur, order_id, messages)
                return CreatedOrder(order=order, created=True, event=event, outbox=rows)
        except _KeyTaken:
            assert idempotency_key is not None
            replay = self._replay(account_id, idempotency_key, fingerprint)
            if replay is None:  # the key's row is committed, so this cannot happen
                raise RuntimeError(f"idempotency key {idempotency_key!r} vanished") from None
            return replay

    def _replay(self, account_id: str, key: str, fingerprint: str) -> CreatedOrder | None:
        with self._statement() as cur:
            cur.execute(
                "SELECT k.fingerprint AS key_fingerprint, o.* FROM idempotency_keys k"
                " JOIN orders o ON o.id = k.order_id WHERE k.account_id = %s AND k.key = %s",
                (account_id, key),
            )
            row = cur.fetchone()
        if row is None:
            return None
        if row["key_fingerprint"] != fingerprint:
            raise IdempotencyConflict(
                "this Idempotency-Key was already used with a different request",
                field="Idempotency-Key",
            )
        return CreatedOrder(order=Order.from_row(row), created=False)

    def transition(
        self,
        order_id: str,
        from_status: Status,
        to_status: Status,
        *,
        data: Mapping[str, Any] | None = None,
        changes: Mapping[str, Any] | None = None,
        outbox: Sequence[OutboxMessage] = (),
    ) -> TransitionResult:
        """Move the order from `from_status` to `to_status` if, and only if, it is
        there now; with it, in one transaction: the event row (next seq, `data`), the
        whitelisted column `changes`, the `outbox` rows, attempts reset to 0."""
        changes = dict(changes or {})
        unknown = sorted(set(changes) - CHANGEABLE_COLUMNS)
        if unknown:
            raise ValueError(f"a transition cannot change {', '.join(unknown)}")
        if not is_legal(from_status, to_status):
            return TransitionResult(Outcome.ILLEGAL, self.get_order(order_id))
        if not is_uuid(order_id):
            return TransitionResult(Outcome.NOT_FOUND, None)

        assignments = [
            sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(f"c_{column}"))
            for column in sorted(changes)
        ]
        query = sql.SQL(
            "UPDATE orders SET status = %(to)s, version = version + 1, attempts = 0,"
            " updated_at = now(){assignments}"
            " WHERE id = %(id)s AND status = %(from)s RETURNING *"
        ).format(assignments=sql.SQL("").join(sql.SQL(", ") + a for a in assignments))
        params: dict[str, Any] = {"to": to_status.value, "from": from_status.value, "id": order_id}
        for column, value in changes.items():
            params[f"c_{column}"] = jsonb(value) if column in _JSON_COLUMNS else value

        with self._transaction() as cur:
            cur.execute(query, params)
            row = cur.fetchone()
            if row is None:
                cur.execute("SELECT * FROM orders WHERE id = %s", (order_id,))
                current = cur.fetchone()
                if current is None:
                    return TransitionResult(Outcome.NOT_FOUND, None)
                order = Order.from_row(current)
                if progress(order.status) < progress(from_status):
                    return TransitionResult(Outcome.OUT_OF_ORDER, order)
                # At or past the target, or gone elsewhere (failed): a stale message.
                return TransitionResult(Outcome.DUPLICATE, order)
            order = Order.from_row(row)
            event = _insert_event(cur, order_id, from_status, to_status, data or {})
            rows = write_outbox(cur, order_id, outbox)
            return TransitionResult(Outcome.APPLIED, order, event, rows)

    def record_failed_attempt(self, order_id: str, status: Status, error: str) -> int | None:
        """Count a failed attempt at the step leaving `status`; the new count, or None
        when the order is no longer in `status` (the message is stale). It also touches
        updated_at: an order being retried is not stuck."""
        if not is_uuid(order_id):
            return None
        with self._statement() as cur:
            cur.execute(
                "UPDATE orders SET attempts = attempts + 1, last_error = %s, updated_at = now()"
                " WHERE id = %s AND status = %s RETURNING attempts",
                (error, order_id, status.value),
            )
            row = cur.fetchone()
            return None if row is None else int(row["attempts"])

    def get_order(self, order_id: str, *, account_id: str | None = None) -> Order | None:
        """The order; with `account_id`, only if that account owns it (the workers read
        any order, the APIs only their caller's)."""
        if not is_uuid(order_id):
            return None
        with self._statement() as cur:
            if account_id is None:
                cur.execute("SELECT * FROM orders WHERE id = %s", (order_id,))
            else:
                cur.execute(
                    "SELECT * FROM orders WHERE id = %s AND account_id = %s",
                    (order_id, account_id),
                )
            row = cur.fetchone()
            return None if row is None else Order.from_row(row)

    def get_events(self, order_id: str, *, after_seq: int = 0) -> list[OrderEvent]:
        """The order's events with seq > after_seq, in seq order."""
        if not is_uuid(order_id):
            return []
        with self._statement() as cur:
            cur.execute(
                "SELECT * FROM order_events WHERE order_id = %s AND seq > %s ORDER BY seq",
                (order_id, after_seq),
            )
            return [OrderEvent.from_row(row) for row in cur.fetchall()]


def _insert_event(
    cur: DictCursor,
    order_id: str,
    from_status: Status | None,
    to_status: Status,
    data: Mapping[str, Any],
) -> OrderEvent:
    # max + 1 is race-free: the caller holds the order's row lock (its UPDATE or INSERT),
    # so no other transaction can be appending to this order's events.
    cur.execute(
        "INSERT INTO order_events (order_id, seq, from_status, to_status, data)"
        " VALUES (%s, (SELECT coalesce(max(seq), 0) + 1 FROM order_events WHERE order_id = %s),"
        " %s, %s, %s) RETURNING *",
        (
            order_id,
            order_id,
            None if from_status is None else from_status.value,
            to_status.value,
            jsonb(dict(data)),
        ),
    )
    return OrderEvent.from_row(fetch_one(cur))
