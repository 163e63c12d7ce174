"""The store's side of messaging, against a real PostgreSQL: the outbox relay, the
sweeper's stuck-order query, WebSocket subscriptions and deliveries, and the
simulated chain's ledger."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from psycopg import sql

from order_engine.dex.ledger import PostgresLedger, SecondSwapError
from order_engine.dex.venue import SubmissionLedger
from order_engine.orders import Status
from order_engine.outbox import OutboxStore
from order_engine.store import Store
from order_engine.subscriptions import SubscriptionStore


def age(db: psycopg.Connection, table: str, column: str, order_ids: list[str]) -> None:
    """Pretend rows of these orders were written an hour ago."""
    key = "id" if table == "orders" else "order_id"
    query = sql.SQL("UPDATE {t} SET {c} = {c} - interval '1 hour' WHERE {k} = ANY(%s::uuid[])")
    db.execute(
        query.format(t=sql.Identifier(table), c=sql.Identifier(column), k=sql.Identifier(key)),
        (order_ids,),
    )


# --- outbox ---------------------------------------------------------------------------


def test_concurrent_relays_never_claim_the_same_row(make_database, new_order, db):
    order_ids = [new_order().id for _ in range(4)]  # two outbox rows each
    age(db, "outbox", "created_at", order_ids)
    relays = [OutboxStore(make_database()), OutboxStore(make_database())]
    barrier = threading.Barrier(2, timeout=10)
    claimed: dict[int, list[int]] = {}

    def relay(index: int) -> None:
        with relays[index].claim_unsent(older_than_seconds=1800, limit=3) as rows:
            claimed[index] = [row.id for row in rows]
            # Both claims are open at once: without SKIP LOCKED the second relay would
            # block on the first one's rows and never reach this barrier.
            barrier.wait()

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


def test_subscribing_is_idempotent_and_needs_an_existing_order(subscriptions, new_order):
    order = new_order()
    connection = f"conn-{uuid.uuid4()}"

    assert subscriptions.subscribe(connection, order.id)
    assert subscriptions.subscribe(connection, order.id)
    assert not subscriptions.subscribe(connection, uuid.uuid4())
    assert subscriptions.subscribers(order.id) == [(connection, 0)]


def test_subscribers_get_only_the_events_after_their_cursor(subscriptions, new_order, advance):
    order = new_order()
    advance(order.id, [Status.PENDING, Status.ROUTING, Status.BUILDING])
    ahead, behind = sorted(f"conn-{uuid.uuid4()}" for _ in range(2))
    subscriptions.subscribe(ahead, order.id)
    subscriptions.subscribe(behind, order.id)

    with subscriptions.deliveries(order.id) as batch:
        assert [(p.connection_id, [e.seq for e in p.events]) for p in batch.pending] == [
            (ahead, [1, 2, 3]),
            (behind, [1, 2, 3]),
        ]
        assert batch.order is not None and batch.order.status is Status.BUILDING
        batch.advance(ahead, 3)

    advance(order.id, [Status.BUILDING, Status.SUBMITTED])
    with subscriptions.deliveries(order.id) as batch:
        pending = {p.connection_id: (p.last_seq, [e.seq for e in p.events]) for p in batch.pending}
        assert pending == {ahead: (3, [4]), behind: (0, [1, 2, 3, 4])}
        assert batch.order is not None  # `behind` is due its snapshot
        batch.advance(ahead, 2)  # a cursor never moves back
        batch.advance(behind, 4)

    assert dict(subscriptions.subscribers(order.id))[ahead] == 3
    advance(order.id, [Status.SUBMITTED, Status.CONFIRMED])
    with subscriptions.deliveries(order.id) as batch:
        assert [(p.last_seq, [e.seq for e in p.events]) for p in batch.pending] == [
            (3, [4, 5]),
            (4, [5]),
        ]
        assert batch.order is None  # live events only: the order row is not read


def test_dropping_a_gone_connection_removes_only_that_connection(subscriptions, new_order):
    order, other_order = new_order(), new_order()
    gone, alive = f"conn-{uuid.uuid4()}", f"conn-{uuid.uuid4()}"
    for connection in (gone, alive):
        subscriptions.subscribe(connection, order.id)
        subscriptions.subscribe(connection, other_order.id)

    with subscriptions.deliveries(order.id) as batch:
        batch.drop(gone)

    assert subscriptions.subscribers(order.id) == [(alive, 0)]
    assert subscriptions.subscribers(other_order.id) == [(alive, 0)]  # the connection is gone


def test_removing_a_connection_takes_its_subscriptions_and_is_idempotent(subscriptions, new_order):
    order = new_order()
    connection = f"conn-{uuid.uuid4()}"
    subscriptions.add_connection(connection, {"sourceIp": "203.0.113.7"})
    subscriptions.add_connection(connection, {"sourceIp": "203.0.113.7"})
    subscriptions.subscribe(connection, order.id)

    subscriptions.remove_connection(connection)
    subscriptions.remove_connection(connection)

    assert subscriptions.subscribers(order.id) == []


def test_two_notifier_passes_for_one_order_run_one_after_the_other(make_database, new_order):
    order = new_order()
    connection = f"conn-{uuid.uuid4()}"
    first_store, second_store = (SubscriptionStore(make_database()) for _ in range(2))
    first_store.subscribe(connection, order.id)
    first_in = threading.Event()
    seen: dict[str, object] = {}

    def first_pass() -> None:
        with first_store.deliveries(order.id) as batch:
            first_in.set()
            time.sleep(0.3)  # "posting to the connection"
            batch.advance(connection, 1)
        seen["first_done"] = time.monotonic()

    thread = threading.Thread(target=first_pass)
    thread.start()
    first_in.wait(5)
    with second_store.deliveries(order.id) as batch:
        seen["second_in"] = time.monotonic()
        seen["second_pending"] = [(p.last_seq, len(p.events)) for p in batch.pending]
    thread.join()

    assert seen["second_in"] >= seen["first_done"]  # type: ignore[operator]
    assert seen["second_pending"] == [(1, 0)]  # it saw the first pass's cursor


def test_an_event_committed_while_a_pass_waits_for_the_lock_is_not_lost(
    make_database, new_order, db
):
    """A pass reads the events of its statement's snapshot, taken before the lock it
    waits for; an event committing meanwhile reaches the subscriber through the pass
    of its own notify message, once and in order."""
    order = new_order()
    connection = f"conn-{uuid.uuid4()}"
    holder, waiter, writer = (SubscriptionStore(make_database()) for _ in range(3))
    holder.subscribe(connection, order.id)
    delivered: list[int] = []
    holding, release = threading.Event(), threading.Event()

    def deliver(store, hold: bool = False) -> None:
        with store.deliveries(order.id) as batch:
            for pending in batch.pending:
                delivered.extend(event.seq for event in pending.events)
                if pending.events:
                    batch.advance(connection, pending.events[-1].seq)
            if hold:
                holding.set()
                release.wait(5)

    first = threading.Thread(target=deliver, args=(holder, True))
    first.start()
    assert holding.wait(5)
    second = threading.Thread(target=deliver, args=(waiter,))
    second.start()
    deadline = time.monotonic() + 5
    while not db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        ("%FROM subscriptions%FOR UPDATE%",),
    ).fetchone()[0]:
        assert time.monotonic() < deadline, "the second pass never waited for the lock"
        time.sleep(0.01)
    assert Store(writer.database).transition(order.id, Status.PENDING, Status.ROUTING).applied
    release.set()
    first.join()
    second.join()
    assert delivered == [1]  # the waiting pass's snapshot predates event 2

    deliver(writer)  # the pass of event 2's own notify message
    assert delivered == [1, 2]


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
