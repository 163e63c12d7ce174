"""WebSocket connections, their subscriptions, and delivery cursors.

Each subscription remembers `last_seq`, the highest event already delivered to that
connection. The notifier locks an order's subscriptions (`deliveries`), sends each one
the events past its cursor, and advances the cursor in the same transaction. Two
notifier invocations for one order therefore serialize, and every connection receives
that order's events in `seq` order; a crash before commit only causes resends with the
same `seq`, which clients drop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple
from uuid import UUID

from order_engine.account_store import Caller
from order_engine.database import DictCursor, Repository, fetch_one, jsonb
from order_engine.records import Order, OrderEvent


class Delivery(NamedTuple):
    connection_id: str
    last_seq: int
    events: list[OrderEvent]  # seq > last_seq, ascending; may be empty


class DeliveryBatch:
    """One notifier pass over one order, inside the transaction holding its
    subscriptions locked. Cursor moves commit when the `deliveries` block ends."""

    def __init__(
        self,
        cur: DictCursor,
        order_id: UUID,
        order: Order | None,
        pending: Sequence[Delivery],
    ) -> None:
        self._cur = cur
        self._order_id = order_id
        # The order as of this pass, read only when a subscriber is due its snapshot
        # (a first delivery); None otherwise. Live events need no more than the events.
        self.order = order
        self.pending: list[Delivery] = list(pending)
        self.dropped: list[str] = []

    def advance(self, connection_id: str, seq: int) -> None:
        """Record that `connection_id` has everything up to `seq`. Never moves back."""
        self._cur.execute(
            "UPDATE subscriptions SET last_seq = greatest(last_seq, %s)"
            " WHERE connection_id = %s AND order_id = %s",
            (seq, connection_id, self._order_id),
        )

    def drop(self, connection_id: str) -> None:
        """The connection is gone (GoneException): forget it.

        Its subscription to this order goes now; the connection row (and so its other
        subscriptions) goes right after commit, in a transaction of its own, so this
        one never waits on locks held by notifiers of other orders.
        """
        self._cur.execute(
            "DELETE FROM subscriptions WHERE connection_id = %s AND order_id = %s",
            (connection_id, self._order_id),
        )
        self.dropped.append(connection_id)


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
                "INSERT INTO connections (connection_id, metadata, account_id, key_prefix)"
                " VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (connection_id) DO UPDATE SET last_seen_at = now(),"
                " metadata = EXCLUDED.metadata, account_id = EXCLUDED.account_id,"
                " key_prefix = EXCLUDED.key_prefix",
                (
                    connection_id,
                    jsonb(dict(metadata or {})),
                    None if caller is None else caller.account_id,
                    None if caller is None else caller.key_prefix,
                ),
            )

    def remove_connection(self, connection_id: str) -> None:
        """Forget a connection and its subscriptions; unknown ids are fine."""
        with self.database.statement() as cur:
            cur.execute("DELETE FROM connections WHERE connection_id = %s", (connection_id,))

    def subscribe(self, connection_id: str, order_id: UUID) -> bool:
        """Follow `order_id` from `connection_id` (created if missing); False when the
        order does not exist. Subscribing twice changes nothing (the cursor stays)."""
        with self.database.statement() as cur:
            # One statement. The connection's upsert is DO UPDATE rather than DO
            # NOTHING: it locks the row, so a concurrent $disconnect cannot delete it
            # before the subscription's foreign key is checked.
            cur.execute(
                "WITH target AS (SELECT id FROM orders WHERE id = %(order)s),"
                " connection AS (INSERT INTO connections (connection_id)"
                "  SELECT %(connection)s::text FROM target"
                "  ON CONFLICT (connection_id) DO UPDATE SET last_seen_at = now()"
                "  RETURNING connection_id),"
                " subscribed AS (INSERT INTO subscriptions (connection_id, order_id)"
                "  SELECT connection_id, %(order)s::uuid FROM connection ON CONFLICT DO NOTHING)"
                " SELECT EXISTS (SELECT FROM target) AS found",
                {"order": order_id, "connection": connection_id},
            )
            return bool(fetch_one(cur)["found"])

    def subscribers(self, order_id: UUID) -> list[tuple[str, int]]:
        """(connection_id, last_seq) of every subscriber of the order."""
        with self.database.statement() as cur:
            cur.execute(
                "SELECT connection_id, last_seq FROM subscriptions"
                " WHERE order_id = %s ORDER BY connection_id",
                (order_id,),
            )
            return [(row["connection_id"], row["last_seq"]) for row in cur.fetchall()]

    @contextmanager
    def deliveries(self, order_id: UUID) -> Iterator[DeliveryBatch]:
        """Lock the order's subscriptions and yield what each subscriber is missing."""
        with self.database.transaction() as cur:
            # One row per subscription and event it lacks (a subscription lacking
            # none comes once, with no event). Locked in a fixed order, so concurrent
            # passes queue up instead of deadlocking. The events are those of the
            # statement's snapshot, taken before a lock it waited for: any event
            # committed while it waited has a notify message of its own, whose pass
            # delivers it.
            cur.execute(
                "SELECT s.connection_id, s.last_seq, e.*"
                " FROM (SELECT connection_id, last_seq FROM subscriptions"
                "       WHERE order_id = %(order)s ORDER BY connection_id FOR UPDATE) s"
                " LEFT JOIN order_events e ON e.order_id = %(order)s AND e.seq > s.last_seq"
                " ORDER BY s.connection_id, e.seq",
                {"order": order_id},
            )
            missing: dict[tuple[str, int], list[OrderEvent]] = {}
            for row in cur.fetchall():
                events = missing.setdefault((row["connection_id"], row["last_seq"]), [])
                if row["seq"] is not None:
                    events.append(OrderEvent.from_row(row))
            order: Order | None = None
            if any(events and last_seq == 0 for (_, last_seq), events in missing.items()):
                # A subscription references its order, so the row is there.
                cur.execute("SELECT * FROM orders WHERE id = %s", (order_id,))
                order = Order.from_row(fetch_one(cur))
            batch = DeliveryBatch(
                cur,
                order_id,
                order,
                [
                    Delivery(connection_id, last_seq, events)
                    for (connection_id, last_seq), events in missing.items()
                ],
            )
            yield batch
        for connection_id in batch.dropped:
            self.remove_connection(connection_id)
