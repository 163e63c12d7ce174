"""The transactional outbox, and the sweeper's queries.

A message is written in the transaction whose commit makes it necessary (see
`write_outbox`), published right after commit, then marked sent. A relay drains what
was left behind (`claim_unsent`), and `claim_stuck` takes orders that stopped moving
with nothing in the outbox to move them (`find_stuck` only names them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from order_engine.database import Conninfo, DictCursor, StoreBase, fetch_one, is_uuid, jsonb
from order_engine.orders import TERMINAL
from order_engine.records import Order, OutboxMessage, OutboxRow

# find_stuck and claim_stuck spell the terminal statuses out; this keeps them honest.
assert {status.value for status in TERMINAL} == {"confirmed", "failed"}

# The advisory lock that lets one sweep run at a time ("swep" in ASCII).
_SWEEP_LOCK = 0x73776570


def write_outbox(
    cur: DictCursor, order_id: str, messages: Iterable[OutboxMessage]
) -> list[OutboxRow]:
    """Insert `messages` in the caller's transaction; return the rows actually written
    (a message whose dedupe_key exists already is skipped: it was written before)."""
    params = [(order_id, m.topic, jsonb(m.payload), m.dedupe_key) for m in messages]
    if not params:
        return []
    # executemany pipelines the rows: one round trip for all of them, not one each.
    cur.executemany(
        "INSERT INTO outbox (order_id, topic, payload, dedupe_key) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (dedupe_key) DO NOTHING RETURNING *",
        params,
        returning=True,
    )
    written: list[OutboxRow] = []
    while True:  # one result per row: empty where the row existed already
        row = cur.fetchone()
        if row is not None:
            written.append(OutboxRow.from_row(row))
        if not cur.nextset():
            return written


def _mark_sent(cur: DictCursor, outbox_ids: Sequence[int]) -> None:
    if outbox_ids:
        cur.execute(
            "UPDATE outbox SET sent_at = now() WHERE id = ANY(%s) AND sent_at IS NULL",
            (list(outbox_ids),),
        )


class OutboxClaim(list[OutboxRow]):
    """The rows a relay claimed: a list, plus `mark_sent` in the claim's transaction."""

    def __init__(self, cur: DictCursor, rows: Iterable[OutboxRow]) -> None:
        super().__init__(rows)
        self._cur = cur

    def mark_sent(self, outbox_ids: Sequence[int]) -> None:
        _mark_sent(self._cur, outbox_ids)


class OutboxStore(StoreBase):
    def __init__(self, url: Conninfo, **pool_options: Any) -> None:
        super().__init__(url, **pool_options)
        # The claim open in each thread, if any: see mark_sent.
        self._claims = threading.local()

    def enqueue(self, order_id: str, messages: Sequence[OutboxMessage]) -> list[OutboxRow]:
        """Write outbox rows on their own (no transition), e.g. to re-drive an order."""
        with self._transaction() as cur:
            return write_outbox(cur, order_id, messages)

    @contextmanager
    def sweep_turn(self) -> Iterator[bool]:
        """Whether the caller may sweep now: True for one caller at a time, across every
        process on this database, until its block ends.

        Scheduled sweeps overlap when one outlasts the schedule (a big backlog through a
        slow queue). Each latecomer would hold pooled connections in claims of its own
        until the workers' steps time out waiting for one; finding the turn taken, it
        returns at once instead. A transaction-scoped advisory lock, so an error or a
        lost connection gives the turn back: a session lock left on a pooled connection
        would stop every sweep after it. The transaction holds no snapshot and no row
        lock, only the turn.
        """
        with self._transaction() as cur:
            cur.execute("SELECT pg_try_advisory_xact_lock(%s) AS mine", (_SWEEP_LOCK,))
            yield bool(fetch_one(cur)["mine"])

    @contextmanager
    def claim_unsent(self, *, older_than_seconds: float, limit: int = 100) -> Iterator[OutboxClaim]:
        """Lock up to `limit` unsent rows older than the grace period, oldest first
        among those claimed least often.

        Rows another relay holds are skipped (FOR UPDATE SKIP LOCKED), so concurrent
        relays never publish the same row twice. Each claimed row's `attempts` is
        incremented (a row that keeps failing shows it). Rows are NOT marked sent on
        exit: mark the ones the queue accepted, with `claim.mark_sent(ids)` or
        `store.mark_sent(ids)` (the latter joins the claim, see mark_sent). The rest
        stay unsent for the next relay. If the block raises, the claim rolls back.
        """
        with self._transaction() as cur:
            cur.execute(
                "UPDATE outbox SET attempts = attempts + 1 WHERE id IN ("
                " SELECT id FROM outbox"
                " WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => %s)"
                # Fewest attempts first: rows a queue keeps refusing sink behind fresh
                # ones, so a hundred of them cannot fill every claim and starve the rest.
                " ORDER BY attempts, id LIMIT %s FOR UPDATE SKIP LOCKED"
                ") RETURNING *",
                (older_than_seconds, limit),
            )
            claim = OutboxClaim(cur, sorted(map(OutboxRow.from_row, cur.fetchall()), key=_id))
            outer = getattr(self._claims, "current", None)
            self._claims.current = claim
            try:
                yield claim
            finally:
                self._claims.current = outer

    def mark_sent(self, outbox_ids: Sequence[int]) -> None:
        """Mark rows published (the fast path after commit, or a relay's claim).

        Called inside a `claim_unsent` block of the same thread, it runs in the claim's
        transaction: on another connection it would wait for the claim's own row locks,
        which is to say forever.
        """
        if not outbox_ids:
            return
        claim: OutboxClaim | None = getattr(self._claims, "current", None)
        if claim is not None:
            claim.mark_sent(outbox_ids)
            return
        with self._statement() as cur:
            _mark_sent(cur, outbox_ids)

    def get_outbox(self, order_id: str) -> list[OutboxRow]:
        """Every outbox row of an order, oldest first (for operators and tests)."""
        if not is_uuid(order_id):
            return []
        with self._statement() as cur:
            cur.execute("SELECT * FROM outbox WHERE order_id = %s ORDER BY id", (order_id,))
            return [OutboxRow.from_row(row) for row in cur.fetchall()]

    def claim_stuck(self, *, older_than_seconds: float, limit: int = 100) -> list[Order]:
        """Take up to `limit` stuck orders (as `find_stuck` names them), oldest first, by
        touching them (updated_at = now()): a re-driven order gets a new deadline.

        One statement, committed at once: orders another sweeper is claiming are
        skipped (FOR UPDATE SKIP LOCKED), and a touched order is not stuck again until
        the deadline has passed once more, so two sweepers at once, or two sweeps in a
        row, take each order once. No lock is held while the caller re-sends (workers
        would queue behind it, holding their connections); if a re-send fails, that
        order waits one more deadline. The orders are returned as they were before.
        """
        with self._statement() as cur:
            cur.execute(
                "WITH stuck AS ("
                " SELECT o.* FROM orders o"
                " WHERE o.status NOT IN ('confirmed', 'failed')"
                " AND o.updated_at < now() - make_interval(secs => %s)"
                " AND NOT EXISTS (SELECT 1 FROM outbox b"
                "                 WHERE b.order_id = o.id AND b.sent_at IS NULL)"
                " ORDER BY o.updated_at LIMIT %s FOR UPDATE SKIP LOCKED"
                ") UPDATE orders SET updated_at = now() FROM stuck"
                " WHERE orders.id = stuck.id RETURNING stuck.*",
                (older_than_seconds, limit),
            )
            stuck = [Order.from_row(row) for row in cur.fetchall()]
        return sorted(stuck, key=lambda order: order.updated_at)

    def find_stuck(self, *, older_than_seconds: float, limit: int = 100) -> list[Order]:
        """Live orders untouched for longer than the deadline with no unsent outbox row:
        nothing will move them unless someone re-drives them. Oldest first."""
        with self._statement() as cur:
            cur.execute(
                "SELECT * FROM orders o"
                # Spelled like the partial index's predicate, so the planner uses it.
                " WHERE o.status NOT IN ('confirmed', 'failed')"
                " AND o.updated_at < now() - make_interval(secs => %s)"
                " AND NOT EXISTS (SELECT 1 FROM outbox b"
                "                 WHERE b.order_id = o.id AND b.sent_at IS NULL)"
                " ORDER BY o.updated_at LIMIT %s",
                (older_than_seconds, limit),
            )
            return [Order.from_row(row) for row in cur.fetchall()]


def _id(row: OutboxRow) -> int:
    return row.id
