"""The transactional outbox: it builds, writes, publishes and relays every message that
moves an order on.

- Built here: what a new order is born with (`first_messages`) and what an applied
  transition writes (`transition_messages`), each with a dedupe key (`_message`), so
  writing a message twice (a replayed transition) writes it once.
- Written in the statement whose commit makes it necessary: `WRITTEN` is that
  statement's outbox part (store.py puts the order's write around it).
- Published right after commit (`Outbox.publish`), then marked sent; a relay drains
  what was left behind (`Outbox.relay`, over `OutboxStore.claim_unsent`), and
  `Outbox.redrive` sends the step message of an order that stopped moving with nothing
  in the outbox to move it (`OutboxStore.claim_stuck`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Protocol
from uuid import UUID

from psycopg.types.json import Jsonb

from order_engine.database import Database, DictCursor, Repository, fetch_one, jsonb
from order_engine.messaging import NOTIFY_TOPIC, NotifyMessage, Publisher, StepMessage
from order_engine.orders import INITIAL, TERMINAL, Status, Step, step_for
from order_engine.records import DueDeliveries, Order, OutboxMessage, OutboxRow
from order_engine.subscriptions import MOVED_CURSORS, CursorMove, CursorMoves, cursors_param

log = logging.getLogger(__name__)

# claim_stuck spells the terminal statuses out (as the partial index does); this keeps
# it honest.
assert {status.value for status in TERMINAL} == {"confirmed", "failed", "expired", "cancelled"}

# The advisory lock that lets one sweep run at a time ("swep" in ASCII).
_SWEEP_LOCK = 0x73776570


# --- building -------------------------------------------------------------------------


def _message(order_id: UUID, topic: str, payload: dict[str, Any], *scope: str) -> OutboxMessage:
    """A message whose dedupe key is the order, the topic and `scope`: the one format
    every outbox row's key follows."""
    return OutboxMessage(topic, payload, ":".join([str(order_id), topic, *scope]))


def step_message(order_id: UUID, step: Step) -> OutboxMessage:
    """ "Do `step` for the order": one per order and step, ever (a redelivered or
    replayed transition writes it once)."""
    return _message(order_id, step.value, StepMessage(order_id, step).to_payload())


def trigger_message(order_id: UUID, quote: dict[str, Any], tick: int) -> OutboxMessage:
    """The price watch's "route this limit order now", with the quote that fired it:
    one per order and tick (an order whose price went again before its route step ran
    is fired again by a later tick)."""
    payload = StepMessage(order_id, Step.ROUTE, trigger=quote).to_payload()
    return _message(order_id, Step.ROUTE.value, payload, "trigger", str(tick))


def first_messages(order_id: UUID) -> list[OutboxMessage]:
    """The outbox rows a new order is born with: its first step only.

    Its first event needs no notify message: nobody can be subscribed to an order
    before it exists (both ways to subscribe check that it does), and every
    subscription starts with a snapshot holding the events so far. Such a message
    would cost a send, a receive, a delete and a notifier pass, and find no one."""
    first = step_for(INITIAL)
    assert first is not None  # the initial status is not terminal
    return [step_message(order_id, first)]


def transition_messages(order_id: UUID, to_status: Status) -> list[OutboxMessage]:
    """The outbox rows an applied transition into `to_status` writes: a notification
    (one per status reached), and the message of the step that leaves `to_status`."""
    messages = [
        _message(order_id, NOTIFY_TOPIC, NotifyMessage(order_id).to_payload(), to_status.value)
    ]
    following = step_for(to_status)
    if following is not None:
        messages.append(step_message(order_id, following))
    return messages


# --- writing --------------------------------------------------------------------------

# The outbox part of an order's write (store.py), as a CTE after `moved`, the order row
# the statement wrote: the messages of %(outbox)s (see `outbox_param`), in their order,
# for that order. A message written before (a replayed transition) is skipped, not
# repeated; `written` holds only the rows this statement wrote, to publish after commit.
WRITTEN = """written AS (
    INSERT INTO outbox (order_id, topic, payload, dedupe_key)
    SELECT moved.id, m.topic, m.payload, m.dedupe_key
      FROM moved, ROWS FROM (jsonb_to_recordset(%(outbox)s)
                             AS (topic text, payload jsonb, dedupe_key text))
           WITH ORDINALITY AS m (topic, payload, dedupe_key, n)
     ORDER BY m.n
    ON CONFLICT (dedupe_key) DO NOTHING RETURNING *)"""


def outbox_param(messages: Iterable[OutboxMessage]) -> Jsonb:
    """The %(outbox)s parameter of `WRITTEN`."""
    return jsonb(
        [{"topic": m.topic, "payload": m.payload, "dedupe_key": m.dedupe_key} for m in messages]
    )


_MARK_SENT = "UPDATE outbox SET sent_at = now() WHERE id = ANY(%(ids)s) AND sent_at IS NULL"


def _mark_sent(
    cur: DictCursor, outbox_ids: Sequence[int], cursors: Sequence[CursorMove] = ()
) -> None:
    """Mark rows sent and, in the same statement, move `cursors` (a step batch's)."""
    if cursors:
        cur.execute(
            f"WITH {MOVED_CURSORS} {_MARK_SENT}",
            {"ids": list(outbox_ids), "cursors": cursors_param(cursors)},
        )
    elif outbox_ids:
        cur.execute(_MARK_SENT, {"ids": list(outbox_ids)})


class OutboxClaim(list[OutboxRow]):
    """The rows a relay claimed: a list, plus `mark_sent` in the claim's transaction."""

    def __init__(self, cur: DictCursor, rows: Iterable[OutboxRow]) -> None:
        super().__init__(rows)
        self._cur = cur

    def mark_sent(self, outbox_ids: Sequence[int], cursors: Sequence[CursorMove] = ()) -> None:
        _mark_sent(self._cur, outbox_ids, cursors)


class OutboxStore(Repository):
    def __init__(self, database: Database) -> None:
        super().__init__(database)
        # The claim open in each thread, if any: see mark_sent.
        self._claims = threading.local()

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
        with self.database.transaction() as cur:
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
        with self.database.transaction() as cur:
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

    def write(self, messages: Sequence[OutboxMessage]) -> list[OutboxRow]:
        """Write messages that go with no transition (the price watch's triggers), each
        for the order its payload names; the rows written (a dedupe key seen before is
        skipped), to publish."""
        if not messages:
            return []
        with self.database.statement() as cur:
            cur.execute(
                "INSERT INTO outbox (order_id, topic, payload, dedupe_key)"
                " SELECT (m.payload ->> 'orderId')::uuid, m.topic, m.payload, m.dedupe_key"
                " FROM jsonb_to_recordset(%s) AS m (topic text, payload jsonb, dedupe_key text)"
                " ON CONFLICT (dedupe_key) DO NOTHING RETURNING *",
                (outbox_param(messages),),
            )
            return sorted(map(OutboxRow.from_row, cur.fetchall()), key=_id)

    def mark_sent(self, outbox_ids: Sequence[int], *, cursors: Sequence[CursorMove] = ()) -> None:
        """Mark rows published (the fast path after commit, or a relay's claim); with
        `cursors`, the subscribers' cursor moves of the step batch that sent them, in
        the same statement (subscriptions.CursorMoves).

        Called inside a `claim_unsent` block of the same thread, it runs in the claim's
        transaction: on another connection it would wait for the claim's own row locks,
        which is to say forever.
        """
        if not outbox_ids and not cursors:
            return
        claim: OutboxClaim | None = getattr(self._claims, "current", None)
        if claim is not None:
            claim.mark_sent(outbox_ids, cursors)
            return
        with self.database.statement() as cur:
            _mark_sent(cur, outbox_ids, cursors)

    def claim_stuck(self, *, older_than_seconds: float, limit: int = 100) -> list[Order]:
        """Take up to `limit` stuck orders, oldest first, by touching them (updated_at =
        now()): a re-driven order gets a new deadline. Stuck: live, untouched for longer
        than the deadline, with no unsent outbox row, so nothing will move it unless
        someone re-drives it.

        One statement, committed at once: orders another sweeper is claiming are
        skipped (FOR UPDATE SKIP LOCKED), and a touched order is not stuck again until
        the deadline has passed once more, so two sweepers at once, or two sweeps in a
        row, take each order once. No lock is held while the caller re-sends (workers
        would queue behind it, holding their connections); if a re-send fails, that
        order waits one more deadline. The orders are returned as they were before.
        """
        with self.database.statement() as cur:
            cur.execute(
                "WITH stuck AS ("
                " SELECT o.* FROM orders o"
                # Spelled like the partial index's predicate, so the planner uses it.
                # Watching orders wait for their price, not for a message: never stuck.
                " WHERE o.status NOT IN ('confirmed', 'failed', 'expired', 'cancelled',"
                " 'watching')"
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


def _id(row: OutboxRow) -> int:
    return row.id


# --- publishing and relaying ----------------------------------------------------------


class DeliverDirectly(Protocol):
    """Brings every subscriber of an order up to date, raising if one was not reached
    (Notifier.deliver); with `cursors`, their moves are left there to write later."""

    def __call__(
        self,
        order_id: UUID,
        *,
        cursors: CursorMoves | None = None,
        due: DueDeliveries | None = None,
    ) -> object: ...


class Outbox:
    """Puts outbox rows on their queues: right after commit, by relay, or by re-drive.

    With `deliver`, the fast path delivers a transition's event to the order's
    subscribers itself instead of publishing its notify row: the notifier would only
    receive that message, do the same delivery and delete it, three SQS calls and a hop
    of latency later. The row is still written in the transition's commit and only
    marked sent once the delivery succeeded, so nothing is weakened: a crash before then
    leaves it to the relay, a failed delivery publishes it (the notifier retries), and
    since each subscriber's cursor moves only past what it was sent, a second delivery
    of the same events sends nothing twice. An order with no subscribers costs no
    message at all."""

    def __init__(
        self, store: OutboxStore, publisher: Publisher, *, deliver: DeliverDirectly | None = None
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._deliver = deliver

    def publish(self, rows: Sequence[OutboxRow], *, due: DueDeliveries | None = None) -> None:
        """The fast path: publish rows just committed and mark them sent. A failure
        leaves them to the relay. `due`: what the order's subscribers lack, if the write
        that committed the rows read it (TransitionResult.due)."""
        if not rows:
            return
        notes, others = self._notes(rows)
        # The step messages first, marked sent at once: the order moves on while its
        # event is posted, and a post that takes long (a client not reading) cannot
        # outlast the relay's grace period and have the step message sent twice.
        self._store.mark_sent(self._send(others))
        delivered = [row for row in notes if self._delivered(row, due=due)]
        undelivered = [row for row in notes if row not in delivered]
        self._store.mark_sent([row.id for row in delivered] + self._send(undelivered))

    def batch(self) -> OutboxBatch:
        """The fast path for the transitions of one SQS batch of step records: each
        event is delivered as its transition commits, the messages are sent together
        when the batch is done (`OutboxBatch`)."""
        return OutboxBatch(self)

    def _notes(self, rows: Sequence[OutboxRow]) -> tuple[list[OutboxRow], list[OutboxRow]]:
        """The notify rows to deliver directly, and the rest (to send)."""
        notes = [row for row in rows if row.topic == NOTIFY_TOPIC and self._deliver is not None]
        return notes, [row for row in rows if row not in notes]

    def _send(self, rows: Sequence[OutboxRow]) -> list[int]:
        if not rows:
            return []
        try:
            return list(self._publisher.publish(rows))
        except Exception:
            log.warning(
                "publishing %d outbox rows failed; the sweeper will retry", len(rows), exc_info=True
            )
            return []

    def _delivered(
        self,
        row: OutboxRow,
        cursors: CursorMoves | None = None,
        *,
        due: DueDeliveries | None = None,
    ) -> bool:
        assert self._deliver is not None
        try:
            self._deliver(row.order_id, cursors=cursors, due=due)
        except Exception:
            log.warning(
                "delivering order %s's event directly failed; its notify message goes out",
                row.order_id,
                exc_info=True,
            )
            return False
        return True

    def relay(self, *, older_than_seconds: float) -> int:
        """Publish every row left unsent for longer than `older_than_seconds`; how many
        were published. Stops at the first batch SQS refused part of (next sweep)."""
        published = 0
        while True:
            with self._store.claim_unsent(older_than_seconds=older_than_seconds) as rows:
                if not rows:
                    return published
                sent = self._publisher.publish(rows)
                self._store.mark_sent(sent)
                published += len(sent)
                if len(sent) < len(rows):
                    return published

    def redrive(self, order: Order) -> Step | None:
        """Send again the message of the step that moves `order` on (None when it is
        terminal). Sent at once, not written: its row of the first time was sent, and
        the dedupe key keeps it from being written twice."""
        step = step_for(order.status)
        if step is not None:
            message = step_message(order.id, step)
            self._publisher.send(message.topic, message.payload)
        return step

    def subscribe_later(self, order_id: UUID, connection_id: str, *, delay_seconds: int) -> None:
        """Ask the notifier, `delay_seconds` from now, to subscribe `connection_id` to
        the order and send it the snapshot. Sent now, not written: if the send fails,
        the $connect fails with it (the client may connect again), while a row could
        outlive the connection it names."""
        payload = NotifyMessage(order_id, subscribe_connection_id=connection_id).to_payload()
        self._publisher.send(NOTIFY_TOPIC, payload, delay_seconds=delay_seconds)

    def check(self) -> None:
        """Raise unless every queue the outbox publishes to answers."""
        self._publisher.check()


class OutboxBatch:
    """The fast path of one SQS batch of step records, whose records run at once on
    threads (consumers.py): `publish` from each record's thread right after its commit,
    `flush` once, when every record is done (or use it as a context manager).

    Each event still goes to the order's subscribers as soon as its transition commits
    (the client is waiting for it). The messages wait for the batch: its step messages
    (and the notify messages of events not delivered) go out in one SendMessageBatch per
    topic and ten rows, and one statement marks every row sent or delivered and moves
    the cursors of the subscribers the events went to (subscriptions.CursorMoves),
    instead of a SendMessage, an UPDATE or two and a cursor's UPDATE per record. A
    batch of ten records asks SQS once, not ten times, and PostgreSQL once, not thirty
    times.

    Nothing is weakened: the rows were committed with their transitions, so a crash or
    a failed send before `flush` leaves them unsent for the relay, as after any fast
    path that failed, and the cursors where they were (the relayed notification sends
    those events again, which clients drop by seq). A row waits at most the
    invocation's timeout (10 s), which the relay's grace period (OUTBOX_GRACE_SECONDS,
    10 s) is not shorter than, so the relay does not send a row the batch is about to
    send. The cursors move just after the next step's message goes out: a pass of that
    step that reads them first posts the event again (with its seq, dropped the same
    way); a step's work takes longer than that statement, so this is rare.
    """

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._lock = threading.Lock()
        self._to_send: list[OutboxRow] = []
        self._delivered: list[int] = []
        self._cursors = CursorMoves()

    def __enter__(self) -> OutboxBatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Flush, also after an error (the records that committed before it); not when
        the process is going down (a BaseException that is not an Exception): the
        relay sends what a dead process could not."""
        if exc_type is None or issubclass(exc_type, Exception):
            self.flush()

    def publish(self, rows: Sequence[OutboxRow], *, due: DueDeliveries | None = None) -> None:
        """Rows a record's transition just committed: its event is delivered now (to
        `due`, if the transition read it), the rest waits for `flush`."""
        notes, others = self._outbox._notes(rows)
        delivered = [row for row in notes if self._outbox._delivered(row, self._cursors, due=due)]
        undelivered = [row for row in notes if row not in delivered]
        with self._lock:
            self._to_send += others + undelivered
            self._delivered += [row.id for row in delivered]

    def flush(self) -> None:
        """Send every row published since the last flush, then mark them sent, with
        those delivered, and move the delivered subscribers' cursors; a failure leaves
        its rows to the relay."""
        with self._lock:
            to_send, self._to_send = self._to_send, []
            delivered, self._delivered = self._delivered, []
        cursors = self._cursors.take()
        sent = self._outbox._send(sorted(to_send, key=_id))
        try:
            self._outbox._store.mark_sent(delivered + sent, cursors=cursors)
        except Exception:
            # Sent but not marked (the database went away): the relay sends them again,
            # and the conditional transition makes the second a duplicate, as with any
            # redelivery; the notifications among them send the events again.
            log.warning("marking %d outbox rows sent failed", len(delivered + sent), exc_info=True)
