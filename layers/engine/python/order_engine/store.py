"""The PostgreSQL repository: orders as durable state machines.

Every state change is one conditional UPDATE (`… WHERE id = %s AND status = <from>`)
committed together with its event row and the outbox rows of what must happen next,
all three in one statement (see `_EVENT_AND_OUTBOX`): one transition per message,
nothing lost between PostgreSQL and SQS, events in order (docs/architecture.md).
When the UPDATE matches nothing, the current row is read and the outcome classified,
never guessed from an error message.

`Store` is the orders' repository; connections and subscriptions have theirs in
subscriptions.py, the outbox and the sweeper's queries in outbox.py, API keys and
rate-limit counters in account_store.py, the simulated chain in dex/ledger.py, all over
one `Database`. Every order belongs to an account: reads made for a caller pass its
`account_id`, and another account's order is simply not found.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from uuid import UUID

from psycopg import sql

from order_engine.database import DictCursor, Repository, jsonb
from order_engine.errors import IdempotencyConflict
from order_engine.order_request import MAX_LIMIT_WAIT, OrderRequest
from order_engine.orders import CANCELLABLE, INITIAL, Status, is_legal, progress
from order_engine.outbox import WRITTEN, outbox_param
from order_engine.records import (
    CreatedOrder,
    Delivery,
    DueDeliveries,
    Order,
    OrderEvent,
    OutboxMessage,
    OutboxRow,
    Outcome,
    TransitionResult,
    prefixed,
)

__all__ = [
    "CreatedOrder",
    "Order",
    "OrderEvent",
    "OutboxMessage",
    "OutboxRow",
    "Outcome",
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


class Store(Repository):
    def create_order(
        self,
        order_id: UUID,
        request: OrderRequest,
        *,
        account_id: str,
        outbox: Sequence[OutboxMessage],
        idempotency_key: str | None = None,
    ) -> CreatedOrder:
        """Insert `account_id`'s pending order `order_id`, its first event and its
        `outbox` rows in one statement.

        With an idempotency key (scoped to the account): the same key and request return
        the order created the first time (created=False, nothing written, `order_id`
        unused); the same key with another request raises IdempotencyConflict;
        concurrent requests with one key create one order.
        """
        fingerprint = request.fingerprint()
        params = {
            "id": order_id,
            "account": account_id,
            "key": idempotency_key,
            "fingerprint": fingerprint,
            "type": request.type,
            "token_in": request.token_in.symbol,
            "token_out": request.token_out.symbol,
            "amount": request.amount,
            "slippage_bps": request.slippage_bps,
            "limit_price": request.limit_price,
            "expires_at": request.expires_at,
            "max_wait": MAX_LIMIT_WAIT,
            "request": jsonb(request.to_dict()),
            **_move_params(None, INITIAL, {}, outbox),
        }
        with self.database.statement() as cur:
            rows = write_order(cur, _CREATE, params, outbox)
        if rows:
            order, event, written, _ = _moved(rows)  # nobody follows a new order
            return CreatedOrder(order=order, created=True, event=event, outbox=written)
        # No row: the key's insert met a committed one (it waits for a concurrent
        # insert of the same key), so no order was written; the key says which it is.
        assert idempotency_key is not None
        replay = self._replay(account_id, idempotency_key, fingerprint)
        if replay is None:  # the key's row is committed, so this cannot happen
            raise RuntimeError(f"idempotency key {idempotency_key!r} vanished")
        return replay

    def _replay(self, account_id: str, key: str, fingerprint: str) -> CreatedOrder | None:
        with self.database.statement() as cur:
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
                "this idempotency key was already used with a different request",
                field="idempotencyKey",
            )
        return CreatedOrder(order=Order.from_row(row), created=False)

    def transition(
        self,
        order_id: UUID,
        from_status: Status,
        to_status: Status,
        *,
        data: Mapping[str, Any] | None = None,
        changes: Mapping[str, Any] | None = None,
        outbox: Sequence[OutboxMessage] = (),
    ) -> TransitionResult:
        """Move the order from `from_status` to `to_status` if, and only if, it is
        there now; with it, in one statement: the event row (next seq, `data`), the
        whitelisted column `changes`, the `outbox` rows, attempts reset to 0."""
        changes = dict(changes or {})
        unknown = sorted(set(changes) - CHANGEABLE_COLUMNS)
        if unknown:
            raise ValueError(f"a transition cannot change {', '.join(unknown)}")
        if not is_legal(from_status, to_status):
            return TransitionResult(Outcome.ILLEGAL, self.get_order(order_id))

        params: dict[str, Any] = {
            "id": order_id,
            **_move_params(from_status, to_status, data or {}, outbox),
        }
        for column, value in changes.items():
            params[f"c_{column}"] = jsonb(value) if column in _JSON_COLUMNS else value

        with self.database.statement() as cur:
            rows = write_order(cur, _transition_query(frozenset(changes)), params, outbox)
            if rows:
                return TransitionResult(Outcome.APPLIED, *_moved(rows))
            cur.execute("SELECT * FROM orders WHERE id = %s", (order_id,))
            current = cur.fetchone()
        if current is None:
            return TransitionResult(Outcome.NOT_FOUND, None)
        order = Order.from_row(current)
        if progress(order.status) < progress(from_status):
            return TransitionResult(Outcome.OUT_OF_ORDER, order)
        # At or past the target, or gone elsewhere (failed): a stale message.
        return TransitionResult(Outcome.DUPLICATE, order)

    def cancel(
        self, order_id: UUID, *, account_id: str, outbox: Sequence[OutboxMessage]
    ) -> TransitionResult:
        """Cancel `account_id`'s order if, and only if, it is in a cancellable status now
        (orders.CANCELLABLE): one conditional statement, like every transition, that
        writes the event (from the status it was in) and the `outbox` rows with it.
        Not applied: NOT_FOUND (no such order, or another account's) or ILLEGAL (the
        order is past cancelling; `order` says where it is)."""
        params: dict[str, Any] = {
            "id": order_id,
            "account": account_id,
            "cancellable": sorted(status.value for status in CANCELLABLE),
            **_move_params(None, Status.CANCELLED, {}, outbox),
        }
        with self.database.statement() as cur:
            rows = write_order(cur, _CANCEL, params, outbox)
            if rows:
                return TransitionResult(Outcome.APPLIED, *_moved(rows))
            cur.execute(
                "SELECT * FROM orders WHERE id = %s AND account_id = %s", (order_id, account_id)
            )
            current = cur.fetchone()
        if current is None:
            return TransitionResult(Outcome.NOT_FOUND, None)
        return TransitionResult(Outcome.ILLEGAL, Order.from_row(current))

    def record_failed_attempt(self, order_id: UUID, status: Status, error: str) -> int | None:
        """Count a failed attempt at the step leaving `status`; the new count, or None
        when the order is no longer in `status` (the message is stale). It also touches
        updated_at: an order being retried is not stuck."""
        with self.database.statement() as cur:
            cur.execute(
                "UPDATE orders SET attempts = attempts + 1, last_error = %s, updated_at = now()"
                " WHERE id = %s AND status = %s RETURNING attempts",
                (error, order_id, status.value),
            )
            row = cur.fetchone()
            return None if row is None else int(row["attempts"])

    def get_order(self, order_id: UUID, *, account_id: str | None = None) -> Order | None:
        """The order; with `account_id`, only if that account owns it (the workers read
        any order, the APIs only their caller's)."""
        with self.database.statement() as cur:
            if account_id is None:
                cur.execute("SELECT * FROM orders WHERE id = %s", (order_id,))
            else:
                cur.execute(
                    "SELECT * FROM orders WHERE id = %s AND account_id = %s",
                    (order_id, account_id),
                )
            row = cur.fetchone()
            return None if row is None else Order.from_row(row)

    def get_orders(self, order_ids: Collection[UUID]) -> dict[UUID, Order]:
        """The orders of `order_ids` that exist, by id, read in one statement."""
        if not order_ids:
            return {}
        with self.database.statement() as cur:
            cur.execute("SELECT * FROM orders WHERE id = ANY(%s)", (list(order_ids),))
            orders = [Order.from_row(row) for row in cur.fetchall()]
        return {order.id: order for order in orders}

    def get_events(self, order_id: UUID, *, after_seq: int = 0) -> list[OrderEvent]:
        """The order's events with seq > after_seq, in seq order."""
        with self.database.statement() as cur:
            cur.execute(
                "SELECT * FROM order_events WHERE order_id = %s AND seq > %s ORDER BY seq",
                (order_id, after_seq),
            )
            return [OrderEvent.from_row(row) for row in cur.fetchall()]


# An order's write is one statement, so it commits on its own, with no BEGIN and
# COMMIT around it: `moved` (the order row as written, by an INSERT or a conditional
# UPDATE) is followed by its event and its outbox rows, and when `moved` is empty (the
# UPDATE matched nothing) nothing at all is written. The event's seq is the order's
# new version: both start at 1 and each applied transition adds one to both, and the
# UPDATE's row lock makes that race-free (a max(seq) + 1 inside the statement would
# read the statement's snapshot, taken before the lock was granted).
#
# It also reads the order's subscribers with their cursors (`_SUBSCRIBERS`), so that
# the caller can deliver the new event without a statement of its own to ask who lacks
# it. The statement reads them from its snapshot, taken before it locked the order's
# row: a subscription committed in between is not in that snapshot, while the
# subscriber's own first read may still have come before this commit, and would lack
# the new event. Every new subscription therefore counts itself on the order's row
# (`orders.subscribes`, subscriptions.py) in the statement that writes it. Such a
# statement either locks the row first, so that this UPDATE waits for it and then
# writes through the row as it committed, counting one more than the snapshot
# (`_SUBSCRIBERS` answers NULL: the caller reads the subscribers anew), or waits for
# this commit, and then writes through the row this statement left: its snapshot, if
# read before this commit, is short of the new event, which it sees and reads anew
# (`SubscriptionStore.subscribe_connection`).
_SUBSCRIBERS = """
       CASE WHEN (SELECT subscribes FROM orders WHERE id = moved.id) = moved.subscribes
            THEN (SELECT coalesce(jsonb_agg(jsonb_build_array(s.connection_id, s.last_seq)
                                            ORDER BY s.connection_id), '[]')
                    FROM subscriptions s WHERE s.order_id = moved.id)
       END AS subscribers"""

_EVENT_AND_OUTBOX = (
    """,
event AS (
    INSERT INTO order_events (order_id, seq, from_status, to_status, data)
    SELECT id, version, coalesce(%(from)s::text, moved.previous_status), %(to)s::text,
           %(data)s FROM moved RETURNING *),
"""
    + WRITTEN
    + """
SELECT moved.*,
       event.order_id AS event_order_id, event.seq AS event_seq,
       event.from_status AS event_from_status, event.to_status AS event_to_status,
       event.data AS event_data, event.created_at AS event_created_at,
       written.id AS outbox_id, written.order_id AS outbox_order_id,
       written.topic AS outbox_topic, written.payload AS outbox_payload,
       written.dedupe_key AS outbox_dedupe_key, written.attempts AS outbox_attempts,
       written.created_at AS outbox_created_at, written.sent_at AS outbox_sent_at,"""
    + _SUBSCRIBERS
    + """
  FROM moved CROSS JOIN event LEFT JOIN written ON true
 ORDER BY written.id"""
)

# With an idempotency key, the key's insert comes first: it waits for a concurrent
# insert of the same key, and if that one commits the order is not inserted at all.
_CREATE = (
    """WITH key AS (
    INSERT INTO idempotency_keys (account_id, key, fingerprint, order_id)
    SELECT %(account)s::uuid, %(key)s::text, %(fingerprint)s, %(id)s::uuid
     WHERE %(key)s::text IS NOT NULL
    ON CONFLICT (account_id, key) DO NOTHING RETURNING key),
moved AS (
    INSERT INTO orders (id, account_id, status, type, token_in, token_out, amount,
                        slippage_bps, request, limit_price, expires_at)
    SELECT %(id)s::uuid, %(account)s::uuid, %(to)s::text, %(type)s, %(token_in)s,
           %(token_out)s, %(amount)s, %(slippage_bps)s, %(request)s,
           %(limit_price)s::numeric,
           -- A limit order without expiresAt waits the longest it may (order_request.py).
           CASE WHEN %(type)s = 'limit'
                THEN coalesce(%(expires_at)s::timestamptz, now() + %(max_wait)s) END
     WHERE %(key)s::text IS NULL OR EXISTS (SELECT FROM key)
    RETURNING *, NULL::text AS previous_status)"""
    + _EVENT_AND_OUTBOX
)

# A cancel leaves whichever cancellable status the order is in. FOR UPDATE waits for a
# transition in flight and then reads the row as it committed, so `previous_status` is
# the status the UPDATE really leaves and the event's `from` is true; a row that left
# the cancellable statuses meanwhile matches nothing, and nothing is written. The
# UPDATE tests the status against the list again, not against `previous`: its scan
# starts from the statement's snapshot, which may predate the transition FOR UPDATE
# waited for (pending, where the row is now routing), and only a condition that the
# snapshot's row meets makes PostgreSQL re-check the row as it is now.
_CANCEL = (
    """WITH previous AS (
    SELECT id, status FROM orders
     WHERE id = %(id)s AND account_id = %(account)s::uuid AND status = ANY(%(cancellable)s)
       FOR UPDATE),
moved AS (
    UPDATE orders SET status = %(to)s, version = orders.version + 1, attempts = 0,
           updated_at = now()
      FROM previous
     WHERE orders.id = previous.id AND orders.status = ANY(%(cancellable)s)
    RETURNING orders.*, previous.status AS previous_status)"""
    + _EVENT_AND_OUTBOX
)


@functools.cache
def _transition_query(columns: frozenset[str]) -> sql.Composed:
    """The conditional UPDATE that also sets `columns` (a few shapes, built once each)."""
    assignments = sql.SQL("").join(
        sql.SQL(", {} = {}").format(sql.Identifier(column), sql.Placeholder(f"c_{column}"))
        for column in sorted(columns)
    )
    return sql.SQL(
        "WITH moved AS ("
        " UPDATE orders SET status = %(to)s, version = version + 1, attempts = 0,"
        " updated_at = now(){assignments}"
        " WHERE id = %(id)s AND status = %(from)s RETURNING *, NULL::text AS previous_status)"
        + _EVENT_AND_OUTBOX
    ).format(assignments=assignments)


def _move_params(
    from_status: Status | None,
    to_status: Status,
    data: Mapping[str, Any],
    outbox: Sequence[OutboxMessage],
) -> dict[str, Any]:
    return {
        "from": None if from_status is None else from_status.value,
        "to": to_status.value,
        "data": jsonb(dict(data)),
        "outbox": outbox_param(outbox),
    }


def write_order(
    cur: DictCursor,
    query: sql.Composed | str,
    params: Mapping[str, Any],
    outbox: Sequence[OutboxMessage],
) -> list[dict[str, Any]]:
    """Run an order's write: one row per outbox row written (at least one, the order
    with its event, when it applied), none when it did not. `outbox` is what `params`
    carries, named here for the fault suite, which crashes the process at this point."""
    cur.execute(query, params)
    return cur.fetchall()


def _moved(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[Order, OrderEvent, list[OutboxRow], DueDeliveries | None]:
    """The order, its event, its outbox rows and what its subscribers lack (see
    `_due`), from the rows of `write_order`."""
    first = rows[0]
    written = [
        OutboxRow.from_row(prefixed(row, "outbox_")) for row in rows if row["outbox_id"] is not None
    ]
    event = OrderEvent.from_row(prefixed(first, "event_"))
    return Order.from_row(first), event, written, _due(first["subscribers"], event)


def _due(subscribers: list[list[Any]] | None, event: OrderEvent) -> DueDeliveries | None:
    """What the subscribers the write read (`_SUBSCRIBERS`: [connection, cursor] pairs)
    lack, when that is the new event alone for each; None when the write could not know
    them all, or when one lacks more (its snapshot, or events a failed delivery left
    behind), which only a read of the events gives."""
    if subscribers is None:
        return None
    if any(last_seq != event.seq - 1 for _, last_seq in subscribers):
        return None
    return DueDeliveries(None, [Delivery(str(c), event.seq - 1, [event]) for c, _ in subscribers])
