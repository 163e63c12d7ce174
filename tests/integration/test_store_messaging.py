"""The store's side of messaging, against a real PostgreSQL: the outbox relay, the
sweeper's stuck-order query, WebSocket subscriptions and deliveries, and the
simulated chain's ledger."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from order_engine.accounts import Accounts
from order_engine.dex.ledger import PostgresLedger, SecondSwapError
from order_engine.dex.venue import SubmissionLedger
from order_engine.notify import Notifier
from order_engine.orders import Status
from order_engine.outbox import OutboxStore
from order_engine.store import Store
from order_engine.subscriptions import SubscriptionStore
from tests.support.statements import counted_statements


def age(db: psycopg.Connection, table: str, column: str, order_ids: list[str]) -> None:
    """Pretend rows of these orders were written an hour ago."""
    key = "id" if table == "orders" else "order_id"
    query = sql.SQL("UPDATE {t} SET {c} = {c} - interval '1 hour' WHERE {k} = ANY(%s::uuid[])")
    db.execute(
        query.format(t=sql.Identifier(table), c=sql.Identifier(column), k=sql.Identifier(key)),
        (order_ids,),
    )


# --- outbox ---------------------------------------------------------------------------


def test_concurrent_relays_never_claim_the_same_row(make_database, new_order, db, outbox_store):
    order_ids = [new_order().id for _ in range(4)]  # two outbox rows each
    relays = [OutboxStore(make_database()), OutboxStore(make_database())]
    barrier = threading.Barrier(2, timeout=10)
    claimed: dict[int, list[int]] = {}

    def relay(index: int) -> None:
        with relays[index].claim_unsent(older_than_seconds=1800, limit=3) as rows:
            claimed[index] = [row.id for row in rows]
            # Both claims are open at once: without SKIP LOCKED the second relay would
            # block on the first one's rows and never reach this barrier.
            barrier.wait()

    # The sweep's turn, held meanwhile: a stack of another test on this database would
    # otherwise relay the aged rows first (its sweeper takes the turn, finds it taken,
    # and skips its sweep).
    with outbox_store.sweep_turn() as mine:
        assert mine
        age(db, "outbox", "created_at", order_ids)
        threads = [threading.Thread(target=relay, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert len(claimed[0]) == len(claimed[1]) == 3
    assert not set(claimed[0]) & set(claimed[1])


def test_a_claim_marks_what_was_published_and_leaves_the_rest_for_later(
    outbox_store, new_order, db, outbox_of
):
    order = new_order()
    age(db, "outbox", "created_at", [order.id])
    published, refused = outbox_of(order.id)

    with outbox_store.claim_unsent(older_than_seconds=1800, limit=10_000) as rows:
        mine = {row.id: row for row in rows if row.order_id == order.id}
        assert set(mine) == {published.id, refused.id}
        assert mine[published.id].payload == {"orderId": str(order.id)}
        # Marking through the store (as the sweeper does) joins the claim's transaction.
        outbox_store.mark_sent([published.id])

    after = {row.id: row for row in outbox_of(order.id)}
    assert after[published.id].sent_at is not None
    assert (after[refused.id].sent_at, after[refused.id].attempts) == (None, 1)


def test_fresh_rows_are_left_to_the_fast_path(outbox_store, new_order):
    order = new_order()

    with outbox_store.claim_unsent(older_than_seconds=3600, limit=10_000) as rows:
        assert order.id not in {row.order_id for row in rows}


def test_the_fast_path_marks_rows_sent_after_commit(
    outbox_store, store, make_request, messages_for, account_id, outbox_of
):
    order_id = uuid.uuid4()
    created = store.create_order(
        order_id,
        make_request(),
        account_id=account_id,
        outbox=messages_for(order_id, Status.PENDING),
    )

    outbox_store.mark_sent([row.id for row in created.outbox])

    assert all(row.sent_at is not None for row in outbox_of(created.order.id))


def test_claim_stuck_takes_old_live_orders_with_nothing_in_the_outbox_once(
    outbox_store, new_order, advance, db, outbox_of
):
    stuck, terminal, queued, recent = (new_order() for _ in range(4))
    advance(terminal.id, [Status.PENDING, Status.FAILED])
    for order in (stuck, terminal, recent):
        outbox_store.mark_sent([row.id for row in outbox_of(order.id)])
    age(db, "orders", "updated_at", [stuck.id, terminal.id, queued.id])

    found = {order.id for order in outbox_store.claim_stuck(older_than_seconds=1800, limit=10_000)}

    assert stuck.id in found
    assert not {terminal.id, queued.id, recent.id} & found
    # Claimed means touched: the order has a new deadline, so the next claim skips it.
    again = {order.id for order in outbox_store.claim_stuck(older_than_seconds=1800, limit=10_000)}
    assert stuck.id not in again


# --- connections, subscriptions, deliveries -----------------------------------------------


def test_subscribing_is_idempotent_and_needs_an_existing_order(
    subscriptions, new_order, open_connection
):
    order = new_order()
    connection = open_connection()

    assert subscriptions.subscribe(connection, order.id)
    assert subscriptions.subscribe(connection, order.id)
    assert not subscriptions.subscribe(connection, uuid.uuid4())
    assert subscriptions.subscribers(order.id) == [(connection, 0)]


def test_only_a_connection_open_under_a_live_key_of_the_orders_account_subscribes(
    subscriptions, account_store, new_order, open_connection, make_key, db
):
    order = new_order()
    unknown = f"conn-{uuid.uuid4()}"  # never connected, or already disconnected
    anonymous = f"conn-{uuid.uuid4()}"
    subscriptions.add_connection(anonymous)  # no key behind it
    foreign = f"conn-{uuid.uuid4()}"
    accounts = Accounts(account_store)
    subscriptions.add_connection(foreign, caller=accounts.authenticate(make_key().key))
    revoked = open_connection()
    caller = account_store.caller_for_connection(revoked)
    assert caller is not None
    revoked_key = make_key(account=caller.account_name)
    subscriptions.add_connection(revoked, caller=accounts.authenticate(revoked_key.key))
    db.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE prefix = %s", (revoked_key.info.prefix,)
    )

    assert not subscriptions.subscribe(unknown, order.id)
    assert not subscriptions.subscribe(anonymous, order.id)
    assert not subscriptions.subscribe(foreign, order.id)
    assert not subscriptions.subscribe(revoked, order.id)
    assert subscriptions.subscribers(order.id) == []
    # The subscribe did not bring a forgotten connection back.
    assert account_store.caller_for_connection(unknown) is None


def test_a_subscribe_racing_a_revoke_leaves_no_subscription(
    make_database, account_store, new_order, open_connection, make_key, migrated_url
):
    """The revoke holds its transaction open between updating the key and deleting its
    connections: a subscribe arriving then, having read the key live, must not
    leave a subscription behind once the revoke commits."""
    order = new_order()
    connection = open_connection()
    caller = account_store.caller_for_connection(connection)
    assert caller is not None
    issued = make_key(account=caller.account_name)  # a key of its own, to revoke
    subscriptions = SubscriptionStore(make_database())
    subscriptions.add_connection(
        connection, caller=Accounts(account_store).authenticate(issued.key)
    )
    with psycopg.connect(migrated_url) as revoker:
        prefix = issued.info.prefix
        revoker.execute("UPDATE api_keys SET revoked_at = now() WHERE prefix = %s", (prefix,))
        revoker.execute("DELETE FROM connections WHERE key_prefix = %s", (prefix,))
        outcome: dict[str, bool] = {}
        thread = threading.Thread(
            target=lambda: outcome.update(subscribed=subscriptions.subscribe(connection, order.id))
        )
        thread.start()
        time.sleep(0.3)  # the subscribe now waits on the revoke's delete
        revoker.commit()
    thread.join(5)

    assert outcome == {"subscribed": False}
    assert subscriptions.subscribers(order.id) == []


def test_subscribers_get_only_the_events_after_their_cursor(
    subscriptions, new_order, advance, open_connection
):
    order = new_order()
    advance(order.id, [Status.PENDING, Status.ROUTING, Status.BUILDING])
    ahead, behind = sorted(open_connection() for _ in range(2))
    subscriptions.subscribe(ahead, order.id)
    subscriptions.subscribe(behind, order.id)

    due = subscriptions.due_deliveries(order.id)
    assert [(p.connection_id, [e.seq for e in p.events]) for p in due.pending] == [
        (ahead, [1, 2, 3]),
        (behind, [1, 2, 3]),
    ]
    assert due.order is not None and due.order.status is Status.BUILDING
    assert subscriptions.advance_cursor(ahead, order.id, read=0, sent=3)

    advance(order.id, [Status.BUILDING, Status.SUBMITTED])
    due = subscriptions.due_deliveries(order.id)
    pending = {p.connection_id: (p.last_seq, [e.seq for e in p.events]) for p in due.pending}
    assert pending == {ahead: (3, [4]), behind: (0, [1, 2, 3, 4])}
    assert due.order is not None  # `behind` is due its snapshot
    assert not subscriptions.advance_cursor(ahead, order.id, read=0, sent=2)  # never moves back
    assert subscriptions.advance_cursor(behind, order.id, read=0, sent=4)

    assert dict(subscriptions.subscribers(order.id))[ahead] == 3
    advance(order.id, [Status.SUBMITTED, Status.CONFIRMED])
    due = subscriptions.due_deliveries(order.id)
    assert [(p.last_seq, [e.seq for e in p.events]) for p in due.pending] == [(3, [4, 5]), (4, [5])]
    assert due.order is None  # live events only: the order row is not read


def test_a_transition_reads_who_lacks_its_event_when_each_lacks_only_that(
    store, subscriptions, new_order, advance, open_connection, messages_for
):
    order = new_order()
    advance(order.id, [Status.PENDING, Status.ROUTING])
    nobody = store.transition(
        order.id, Status.ROUTING, Status.BUILDING, outbox=messages_for(order.id, Status.BUILDING)
    )
    assert nobody.due is not None and nobody.due.pending == []

    following, new = sorted(open_connection() for _ in range(2))
    subscriptions.subscribe(following, order.id)
    assert subscriptions.advance_cursor(following, order.id, read=0, sent=3)
    live = store.transition(
        order.id, Status.BUILDING, Status.SUBMITTED, outbox=messages_for(order.id, Status.SUBMITTED)
    )
    assert live.due is not None and live.event is not None
    assert live.due.order is None
    assert [(p.connection_id, p.last_seq, p.events) for p in live.due.pending] == [
        (following, 3, [live.event])
    ]

    # A subscriber due its snapshot lacks more than the new event: read anew.
    subscriptions.subscribe(new, order.id)
    behind = store.transition(
        order.id,
        Status.SUBMITTED,
        Status.CONFIRMED,
        outbox=messages_for(order.id, Status.CONFIRMED),
    )
    assert behind.applied and behind.due is None


class _OpenTransaction:
    """Runs a repository's statements in one transaction of `conn`, left open until the
    test commits it."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    @contextmanager
    def statement(self) -> Iterator[psycopg.Cursor]:
        with self._conn.cursor(row_factory=dict_row) as cur:
            yield cur


class _RecordingSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def send(self, connection_id: str, message: dict) -> None:
        self.sent.append((connection_id, message))


def test_a_subscription_committed_after_a_transitions_snapshot_still_gets_its_event(
    store, subscriptions, new_order, advance, open_connection, messages_for, migrated_url
):
    """The transition reads the subscribers in its own statement, from the snapshot it
    took before locking the order's row. A subscription committed between the two is
    not in that snapshot, and the subscriber's own first read may have come before the
    transition's commit. The subscribe writes the order's row, so the transition waits
    for it and then knows its snapshot is short: it answers no `due`, and the delivery
    reads the subscribers anew and sends the new subscriber the event in its snapshot."""
    order = new_order()
    advance(order.id, [Status.PENDING, Status.ROUTING])
    connection = open_connection()
    outcome: dict[str, Any] = {}

    def transition() -> None:
        outcome["result"] = store.transition(
            order.id,
            Status.ROUTING,
            Status.BUILDING,
            outbox=messages_for(order.id, Status.BUILDING),
        )

    with psycopg.connect(migrated_url) as conn:
        # The subscribe's statement, its commit held back: the transition starting now
        # takes its snapshot before that commit.
        assert SubscriptionStore(_OpenTransaction(conn)).subscribe(connection, order.id)  # type: ignore[arg-type]
        thread = threading.Thread(target=transition)
        thread.start()
        time.sleep(0.3)  # the transition has its snapshot, and waits for the order's row
        conn.commit()
    thread.join(5)

    result = outcome["result"]
    assert result.applied
    assert result.due is None
    sender = _RecordingSender()
    Notifier(subscriptions, sender).deliver(order.id, due=result.due)  # type: ignore[arg-type]
    assert [(c, m["type"], [e["seq"] for e in m["events"]]) for c, m in sender.sent] == [
        (connection, "snapshot", [1, 2, 3])
    ]


def test_a_subscribe_reads_its_snapshot_in_its_own_statement_unless_it_is_short(
    store, subscriptions, new_order, advance, open_connection, messages_for, migrated_url
):
    """The subscribe reads the new subscriber's snapshot from its statement's snapshot.
    A transition that commits after that, but before the subscribe locks the order's
    row to count itself, is not in it: the subscribe says so (no `due`), and the
    delivery reads the snapshot anew, that transition's event in it."""
    order = new_order()
    advance(order.id, [Status.PENDING, Status.ROUTING])
    at_once = subscriptions.subscribe_connection(open_connection(), order.id)
    assert at_once.due is not None and at_once.due.order is not None
    assert [[e.seq for e in p.events] for p in at_once.due.pending] == [[1, 2]]

    connection = open_connection()
    outcome: dict[str, Any] = {}

    def subscribe() -> None:
        outcome["done"] = subscriptions.subscribe_connection(connection, order.id)

    with psycopg.connect(migrated_url) as conn:
        # The transition's statement, its commit held back.
        moved = Store(_OpenTransaction(conn)).transition(  # type: ignore[arg-type]
            order.id,
            Status.ROUTING,
            Status.BUILDING,
            outbox=messages_for(order.id, Status.BUILDING),
        )
        assert moved.applied
        thread = threading.Thread(target=subscribe)
        thread.start()
        time.sleep(0.3)  # the subscribe has its snapshot, and waits for the order's row
        conn.commit()
    thread.join(5)

    done = outcome["done"]
    assert done.subscribed
    assert done.due is None
    sender = _RecordingSender()
    Notifier(subscriptions, sender).deliver(order.id, due=done.due)  # type: ignore[arg-type]
    snapshots = [[e["seq"] for e in m["events"]] for c, m in sender.sent if c == connection]
    assert snapshots == [[1, 2, 3]]


def test_a_snapshot_due_is_read_with_its_events_in_one_statement(
    subscriptions, new_order, advance, open_connection
):
    order = new_order()
    advance(order.id, [Status.PENDING, Status.ROUTING])
    connection = open_connection()
    subscriptions.subscribe(connection, order.id)

    with counted_statements(subscriptions.database) as statements:
        due = subscriptions.due_deliveries(order.id)

    assert statements == [1]
    assert due.order is not None and due.order.id == order.id
    assert due.order.status is Status.ROUTING
    assert [[e.seq for e in p.events] for p in due.pending] == [[1, 2]]


def test_a_cursor_moves_only_from_where_its_pass_read_it(
    subscriptions, new_order, advance, open_connection
):
    """Two passes may post at once; each moves the cursor only if the client had, when
    it started, everything up to where the pass began its run."""
    order = new_order()
    advance(order.id, [Status.PENDING, Status.ROUTING, Status.BUILDING, Status.SUBMITTED])
    connection = open_connection()
    subscriptions.subscribe(connection, order.id)

    assert subscriptions.advance_cursor(connection, order.id, read=0, sent=2)
    # A pass that read 0 and sent 1..4 brings it to 4: the client has 1..4.
    assert subscriptions.advance_cursor(connection, order.id, read=0, sent=4)
    # One that read 0 and sent 1..3 finds it past 3 already.
    assert not subscriptions.advance_cursor(connection, order.id, read=0, sent=3)
    assert dict(subscriptions.subscribers(order.id))[connection] == 4

    # Resubscribed since a pass read 4: the new subscription is due its snapshot.
    subscriptions.remove_connection(connection)
    connection = open_connection()
    subscriptions.subscribe(connection, order.id)
    assert not subscriptions.advance_cursor(connection, order.id, read=4, sent=4)
    assert dict(subscriptions.subscribers(order.id))[connection] == 0


def test_reading_what_subscribers_lack_holds_no_transaction_or_lock(
    subscriptions, new_order, advance, open_connection, db
):
    order = new_order()
    advance(order.id, [Status.PENDING, Status.ROUTING])
    connection = open_connection()
    subscriptions.subscribe(connection, order.id)
    subscriptions.due_deliveries(order.id)

    held = db.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE state LIKE 'idle in transaction%%' AND datname = current_database()"
    ).fetchone()[0]
    assert held == 0
    # Another writer can move the cursor at once.
    assert subscriptions.advance_cursor(connection, order.id, read=0, sent=2)


def test_removing_a_connection_takes_its_subscriptions_and_is_idempotent(
    subscriptions, new_order, open_connection
):
    order = new_order()
    connection = open_connection()
    assert subscriptions.subscribe(connection, order.id)

    subscriptions.remove_connection(connection)
    subscriptions.remove_connection(connection)

    assert subscriptions.subscribers(order.id) == []


# --- the simulated chain's ledger ---------------------------------------------------------


def test_the_ledger_remembers_a_signature_once(database):
    ledger: SubmissionLedger = PostgresLedger(database)
    signature, order_id = f"sig-{uuid.uuid4().hex}", str(uuid.uuid4())

    first = ledger.record(signature, "raydium", order_id, {"amount_in": "1.5"})
    again = ledger.record(signature, "raydium", order_id, {"amount_in": "9"})

    assert (first.first, again.first) == (True, False)
    assert again.submitted_at == first.submitted_at
    assert again.payload == {"amount_in": "1.5"}  # the original transaction
    assert ledger.get(signature) == again
    assert ledger.get("unknown") is None


def test_the_ledger_refuses_a_second_transaction_for_one_order(database):
    ledger = PostgresLedger(database)
    order_id = str(uuid.uuid4())
    ledger.record(f"sig-{uuid.uuid4().hex}", "meteora", order_id, {})

    with pytest.raises(SecondSwapError):
        ledger.record(f"sig-{uuid.uuid4().hex}", "meteora", order_id, {})
