"""WebSocket connections, their subscriptions, and delivery cursors.

Each subscription remembers `last_seq`, the highest event already delivered to that
connection. The notifier reads what each subscriber lacks (`due_deliveries`, one
statement, no lock; or a transition's statement read it, store.py, or the subscribe's
for its snapshot, `subscribe_connection`), posts it with no transaction open, then
moves the cursor with a conditional UPDATE that only succeeds from where it was read: at once
(`advance_cursor`), or, for a step batch's deliveries, all in the statement that closes
the batch (`CursorMoves`, `MOVED_CURSORS`). No lock is ever held across a post, so a
connection that cannot keep up delays nobody else; see notify.py for why order and
completeness survive concurrent passes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from order_engine.account_store import Caller, upsert_connection
from order_engine.database import Repository, jsonb
from order_engine.records import Delivery, DueDeliveries, Order, OrderEvent, prefixed


@dataclass(frozen=True)
class CursorMove:
    """`connection_id` was sent every event of the order from `read`+1 to `sent`, its
    cursor having been read at `read`: the cursor may move to `sent` if it is in
    [read, sent) (see `SubscriptionStore.advance_cursor`)."""

    connection_id: str
    order_id: UUID
    read: int
    sent: int


class CursorMoves:
    """The cursor moves of one step batch's deliveries, written together in the
    statement that closes the batch (outbox.OutboxBatch, with `MOVED_CURSORS`) instead
    of one statement each. Thread-safe: the batch's records deliver at once. A batch
    delivers each order at most once: only one transition per order and step applies.

    A crash before that statement leaves the cursors behind, and the batch's notify
    rows unsent: the relay's notification sends those events again, with their seqs,
    which clients drop; never a gap."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._moves: list[CursorMove] = []

    def add(self, move: CursorMove) -> None:
        with self._lock:
            self._moves.append(move)

    def take(self) -> list[CursorMove]:
        """Every move so far, forgetting them."""
        with self._lock:
            moves, self._moves = self._moves, []
        return moves


# The cursor moves of %(cursors)s (see `cursors_param`), as a CTE another statement puts
# in front of its own (outbox.py, the statement closing a step batch), each only from
# where it was read, as `advance_cursor` moves one.
MOVED_CURSORS = """moved_cursors AS (
    UPDATE subscriptions s SET last_seq = m.sent
      FROM jsonb_to_recordset(%(cursors)s)
           AS m (connection_id text, order_id uuid, read integer, sent integer)
     WHERE s.connection_id = m.connection_id AND s.order_id = m.order_id
       AND s.last_seq >= m.read AND s.last_seq < m.sent)"""


def cursors_param(moves: Sequence[CursorMove]) -> Jsonb:
    """The %(cursors)s parameter of `MOVED_CURSORS`."""
    return jsonb(
        [
            {
                "connection_id": m.connection_id,
                "order_id": m.order_id,
                "read": m.read,
                "sent": m.sent,
            }
            for m in moves
        ]
    )


@dataclass(frozen=True)
class Subscribed:
    """What `SubscriptionStore.subscribe_connection` did."""

    caller: Caller | None  # whom the connection acts for; None: not under a live key
    subscribed: bool  # it follows the order now (newly, or as before)
    # The new subscriber's snapshot, when the statement's own read holds every event;
    # None otherwise (subscribed before, or a transition committed meanwhile): read it.
    due: DueDeliveries | None = None


def _snapshot_due(connection_id: str, rows: Sequence[Mapping[str, Any]]) -> DueDeliveries | None:
    """The snapshot of a new subscription from the rows of `subscribe_connection`, if
    its events reach the version of the order it counted itself on."""
    if rows[0]["id"] is None:  # no new subscription
        return None
    order = Order.from_row(rows[0])
    events = [OrderEvent.from_row(prefixed(row, "event_")) for row in rows if row["event_seq"]]
    if (events[-1].seq if events else 0) != order.version:
        return None
    return DueDeliveries(order, [Delivery(connection_id, 0, events)])


class SubscriptionStore(Repository):
    def add_connection(
        self,
        connection_id: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        caller: Caller | None = None,
    ) -> None:
        """Remember a WebSocket connection and who opened it (`caller`: the account and
        key its $connect presented); again for the same id only refreshes it."""
        with self.database.statement() as cur:
            cur.execute(
                "WITH caller (account_id, key_prefix) AS"
                " (VALUES (%(account)s::uuid, %(key_prefix)s::text)) "
                + upsert_connection("caller"),
                {
                    "connection": connection_id,
                    "metadata": jsonb(dict(metadata or {})),
                    "account": None if caller is None else caller.account_id,
                    "key_prefix": None if caller is None else caller.key_prefix,
                },
            )

    def remove_connection(self, connection_id: str) -> None:
        """Forget a connection and its subscriptions; unknown ids are fine."""
        with self.database.statement() as cur:
            cur.execute("DELETE FROM connections WHERE connection_id = %s", (connection_id,))

    def subscribe(
        self, connection_id: str, order_id: UUID, *, account_id: str | None = None
    ) -> bool:
        """Follow `order_id` from `connection_id`; False when the order does not exist
        (or, with `account_id`, is not that account's), or the connection is not open
        under a live key of the order's account (see `subscribe_connection`)."""
        return self.subscribe_connection(connection_id, order_id, account_id=account_id).subscribed

    def subscribe_connection(
        self, connection_id: str, order_id: UUID, *, account_id: str | None = None
    ) -> Subscribed:
        """Who the connection acts for (None unless it is open under a live key), and
        whether it now follows `order_id`: not when the order does not exist, is not
        that caller's account's (or, with `account_id`, not that account's). One
        statement, so a WebSocket `subscribe` is checked and written at once, with the
        new subscriber's snapshot read (`Subscribed.due`). Subscribing twice changes
        nothing (the cursor stays).

        The key is checked by the statement that writes the row, so a revoke cannot
        slip in between a check and the write. Revoking updates the key and deletes its
        connections in one transaction: a subscribe that read the key live then finds
        the connection locked by that delete (FOR KEY SHARE waits for it) and gone
        after it, so it writes nothing; one that committed first is deleted with its
        connection (ON DELETE CASCADE). The lock also keeps a concurrent $disconnect
        from deleting the connection before the subscription's foreign key is checked.

        A new subscription also counts itself on the order's row (`orders.subscribes`),
        so a transition whose statement began before it committed knows that it cannot
        have seen it (store.py, `_SUBSCRIBERS`), and one in flight is waited for.

        The snapshot comes from the statement's snapshot, which may predate a
        transition that committed before this statement locked the order's row to
        count itself. That UPDATE then wrote through the row as the transition left it,
        a version past the snapshot's last event: the snapshot is short and `due` is
        None (the caller reads it anew, after this commit). A transition that commits
        later waited for this one, and finds the subscription, or knows it missed it.
        """
        with self.database.statement() as cur:
            cur.execute(
                "WITH caller AS (SELECT k.prefix, k.account_id, a.name AS account_name"
                "  FROM connections c"
                "  JOIN api_keys k ON k.prefix = c.key_prefix AND k.account_id = c.account_id"
                "  JOIN accounts a ON a.id = k.account_id"
                "  WHERE c.connection_id = %(connection)s AND k.revoked_at IS NULL"
                "  FOR KEY SHARE OF c),"
                " target AS (SELECT o.id FROM orders o"
                "  JOIN caller ON caller.account_id = o.account_id WHERE o.id = %(order)s"
                "  AND (%(account)s::uuid IS NULL OR o.account_id = %(account)s::uuid)),"
                " subscribed AS (INSERT INTO subscriptions (connection_id, order_id)"
                "  SELECT %(connection)s, id FROM target ON CONFLICT DO NOTHING"
                "  RETURNING order_id),"
                # Counted on the order's row (see store.py, `_SUBSCRIBERS`): this waits for
                # a transition in flight, and tells one that started before this commit
                # that its snapshot lacks a subscriber.
                " counted AS (UPDATE orders SET subscribes = subscribes + 1"
                "  WHERE id IN (SELECT order_id FROM subscribed) RETURNING *)"
                # One row per event of a new subscription's snapshot (or just one).
                " SELECT caller.prefix AS caller_prefix, caller.account_id AS caller_account_id,"
                "  caller.account_name AS caller_account_name,"
                "  EXISTS (SELECT FROM target) AS subscribed, counted.*,"
                "  e.order_id AS event_order_id, e.seq AS event_seq,"
                "  e.from_status AS event_from_status, e.to_status AS event_to_status,"
                "  e.data AS event_data, e.created_at AS event_created_at"
                "  FROM (VALUES (1)) AS one LEFT JOIN caller ON true LEFT JOIN counted ON true"
                "  LEFT JOIN order_events e ON e.order_id = counted.id"
                " ORDER BY e.seq",
                {"order": order_id, "connection": connection_id, "account": account_id},
            )
            rows = cur.fetchall()
        first = rows[0]
        caller = (
            None if first["caller_prefix"] is None else Caller.from_row(prefixed(first, "caller_"))
        )
        return Subscribed(caller, bool(first["subscribed"]), _snapshot_due(connection_id, rows))

    def subscribers(self, order_id: UUID) -> list[tuple[str, int]]:
        """(connection_id, last_seq) of every subscriber of the order."""
        with self.database.statement() as cur:
            cur.execute(
                "SELECT connection_id, last_seq FROM subscriptions"
                " WHERE order_id = %s ORDER BY connection_id",
                (order_id,),
            )
            return [(row["connection_id"], row["last_seq"]) for row in cur.fetchall()]

    def due_deliveries(self, order_id: UUID) -> DueDeliveries:
        """What each subscriber of the order lacks: the events past its cursor, and the
        order itself when one of them is due its snapshot.

        One statement in autocommit, taking no lock: the caller posts with nothing of
        the database held, and moves each cursor with `advance_cursor` afterwards."""
        with self.database.statement() as cur:
            # One row per subscription and event it lacks (a subscription lacking
            # none comes once, with no event); the order's columns only on the rows of
            # a subscription at 0, whose first delivery is the snapshot.
            cur.execute(
                "SELECT s.connection_id, s.last_seq,"
                " e.order_id AS event_order_id, e.seq AS event_seq,"
                " e.from_status AS event_from_status, e.to_status AS event_to_status,"
                " e.data AS event_data, e.created_at AS event_created_at, o.*"
                " FROM subscriptions s"
                " LEFT JOIN order_events e ON e.order_id = s.order_id AND e.seq > s.last_seq"
                " LEFT JOIN orders o ON o.id = s.order_id AND s.last_seq = 0"
                " WHERE s.order_id = %(order)s"
                " ORDER BY s.connection_id, e.seq",
                {"order": order_id},
            )
            rows = cur.fetchall()
        missing: dict[tuple[str, int], list[OrderEvent]] = {}
        order: Order | None = None
        for row in rows:
            events = missing.setdefault((row["connection_id"], row["last_seq"]), [])
            if row["event_seq"] is not None:
                events.append(OrderEvent.from_row(prefixed(row, "event_")))
                if order is None and row["id"] is not None:
                    order = Order.from_row(row)
        pending = [
            Delivery(connection_id, last_seq, events)
            for (connection_id, last_seq), events in missing.items()
        ]
        return DueDeliveries(order, pending)

    def advance_cursor(self, connection_id: str, order_id: UUID, *, read: int, sent: int) -> bool:
        """Record that `connection_id` has every event up to `sent`, having been sent
        all of `read`+1 .. `sent` after its cursor was read at `read`.

        Moves only forward, and only from a cursor in [read, sent): one at `read` or
        above means the client had `read` when this pass started, so it now has
        everything to `sent`. One below `read` is a new subscription (resubscribed
        since), which is due its own snapshot. False when it did not move."""
        with self.database.statement() as cur:
            cur.execute(
                "UPDATE subscriptions SET last_seq = %(sent)s"
                " WHERE connection_id = %(connection)s AND order_id = %(order)s"
                " AND last_seq >= %(read)s AND last_seq < %(sent)s",
                {"connection": connection_id, "order": order_id, "read": read, "sent": sent},
            )
            return cur.rowcount == 1
