"""The store against a real PostgreSQL: orders, conditional transitions, idempotency,
and what happens when the database is not there."""

from __future__ import annotations

import itertools
import socket
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

import order_engine.database
from order_engine.database import fetch_one
from order_engine.errors import IdempotencyConflict, InfrastructureError
from order_engine.orders import HAPPY_PATH, Status
from order_engine.records import OutboxMessage, OutboxRow
from order_engine.store import Outcome, Store


def new_id() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def snapshot(
    store: Store, outbox_of: Callable[[uuid.UUID], list[OutboxRow]]
) -> Callable[[uuid.UUID], Any]:
    """Everything a transition could write, to prove that something wrote nothing."""

    def take(order_id: uuid.UUID) -> tuple[object, ...]:
        order = store.get_order(order_id)
        assert order is not None
        return (
            order.status,
            order.version,
            order.attempts,
            order.updated_at,
            [(e.seq, e.to_status) for e in store.get_events(order_id)],
            [(row.id, row.dedupe_key) for row in outbox_of(order_id)],
        )

    return take


# --- placing orders ------------------------------------------------------------------


def test_a_new_order_is_pending_with_event_one_and_its_outbox_rows(
    store, make_request, account_id, outbox_of
):
    order_id = new_id()
    created = store.create_order(
        order_id,
        make_request("2.5"),
        account_id=account_id,
        outbox=[OutboxMessage("route", {"orderId": order_id}, f"{order_id}:r")],
    )

    order = created.order
    assert order.id == order_id
    assert created.created
    assert (order.status, order.version, order.attempts) == (Status.PENDING, 1, 0)
    assert order.amount == Decimal("2.5") and isinstance(order.amount, Decimal)
    assert order.request == make_request("2.5").to_dict()
    assert [(e.seq, e.from_status, e.to_status) for e in store.get_events(order.id)] == [
        (1, None, Status.PENDING)
    ]
    assert [(row.topic, row.payload) for row in created.outbox] == [
        ("route", {"orderId": str(order.id)})
    ]
    assert created.outbox == outbox_of(order.id)


def test_outbox_rows_already_written_are_skipped_and_only_the_new_ones_come_back(
    store, make_request, account_id, outbox_of
) -> None:
    order_id = new_id()

    def message(name: str) -> OutboxMessage:
        return OutboxMessage("route", {"orderId": order_id, "n": name}, f"{order_id}:{name}")

    first = store.create_order(
        order_id, make_request("1"), account_id=account_id, outbox=[message("a"), message("b")]
    )
    again = store.transition(
        order_id,
        Status.PENDING,
        Status.ROUTING,
        outbox=[message("b"), message("c"), message("a"), message("d")],
    )
    none = store.transition(order_id, Status.ROUTING, Status.BUILDING, outbox=[])

    assert [row.dedupe_key for row in first.outbox] == [f"{order_id}:a", f"{order_id}:b"]
    assert again.applied
    assert [row.dedupe_key for row in again.outbox] == [f"{order_id}:c", f"{order_id}:d"]
    assert none.applied and none.outbox == []
    assert [row.payload["n"] for row in outbox_of(order_id)] == ["a", "b", "c", "d"]


def test_the_same_idempotency_key_and_request_return_the_first_order_and_write_nothing(
    store, make_request, messages_for, account_id, snapshot
):
    key = f"key-{uuid.uuid4()}"
    first_id, second_id = new_id(), new_id()
    first = store.create_order(
        first_id,
        make_request(),
        account_id=account_id,
        outbox=messages_for(first_id, Status.PENDING),
        idempotency_key=key,
    )
    before = snapshot(first.order.id)

    again = store.create_order(
        second_id,
        make_request(),
        account_id=account_id,
        outbox=messages_for(second_id, Status.PENDING),
        idempotency_key=key,
    )

    assert not again.created
    assert again.order.id == first.order.id
    assert store.get_order(second_id) is None
    assert again.outbox == [] and again.event is None
    assert snapshot(first.order.id) == before


def test_the_same_idempotency_key_with_another_request_is_a_conflict(
    store, make_request, account_id
):
    key = f"key-{uuid.uuid4()}"
    store.create_order(
        new_id(), make_request("1"), account_id=account_id, outbox=[], idempotency_key=key
    )

    with pytest.raises(IdempotencyConflict):
        store.create_order(
            new_id(), make_request("2"), account_id=account_id, outbox=[], idempotency_key=key
        )


def test_the_same_idempotency_key_under_two_accounts_makes_two_orders(
    store, make_request, make_key
):
    key = f"key-{uuid.uuid4()}"
    first, second = (make_key().info.account_id for _ in range(2))

    mine = store.create_order(
        new_id(), make_request("1"), account_id=first, outbox=[], idempotency_key=key
    )
    theirs = store.create_order(
        new_id(), make_request("2"), account_id=second, outbox=[], idempotency_key=key
    )

    assert mine.created and theirs.created
    assert mine.order.id != theirs.order.id


def test_concurrent_creates_with_one_idempotency_key_make_one_order(
    make_database, make_request, account_id, outbox_of
):
    key = f"key-{uuid.uuid4()}"
    stores = [Store(make_database()) for _ in range(4)]
    barrier = threading.Barrier(len(stores), timeout=10)
    proposed: list[uuid.UUID] = []
    results = []

    def place(each: Store) -> None:
        order_id = new_id()
        proposed.append(order_id)
        outbox = [OutboxMessage("route", {"orderId": order_id}, f"{order_id}:route")]
        barrier.wait()  # everyone holds an id; now all insert at once
        results.append(
            each.create_order(
                order_id, make_request(), account_id=account_id, outbox=outbox, idempotency_key=key
            )
        )

    threads = [threading.Thread(target=place, args=(each,)) for each in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.created for r in results) == [False, False, False, True]
    assert len({r.order.id for r in results}) == 1
    winner = results[0].order.id
    # The losers' orders were rolled back entirely.
    assert [order_id for order_id in proposed if stores[0].get_order(order_id)] == [winner]
    assert len(outbox_of(winner)) == 1


def test_an_order_is_created_entirely_or_not_at_all(store, make_request, account_id):
    order_id = new_id()
    unencodable = [OutboxMessage("route", {"when": object()}, f"{order_id}:route")]

    with pytest.raises(TypeError):
        store.create_order(order_id, make_request(), account_id=account_id, outbox=unencodable)

    assert store.get_order(order_id) is None
    assert store.get_events(order_id) == []


# --- transitions -----------------------------------------------------------------------


def test_the_happy_path_writes_gap_free_events_in_order_and_keeps_decimals(store, new_order):
    order = new_order()
    changes = {
        Status.ROUTING: {"route": {"venue": "raydium", "amountOut": Decimal("210.5")}},
        Status.BUILDING: {"transaction": {"instructions": ["swap"]}, "tx_signature": "sig"},
        Status.SUBMITTED: {},
        Status.CONFIRMED: {
            "amount_out": Decimal("210.123456"),
            "executed_price": Decimal("140.08"),
        },
    }
    for from_status, to_status in itertools.pairwise(HAPPY_PATH):
        result = store.transition(
            order.id,
            from_status,
            to_status,
            data={"step": str(to_status)},
            changes=changes[to_status],
        )
        assert result.outcome is Outcome.APPLIED
        assert result.event is not None and result.event.to_status is to_status

    events = store.get_events(order.id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.to_status for e in events] == list(HAPPY_PATH)
    assert [e.from_status for e in events] == [None, *HAPPY_PATH[:-1]]
    assert events[2].data == {"step": "building"}
    assert [e.seq for e in store.get_events(order.id, after_seq=3)] == [4, 5]
    final = store.get_order(order.id)
    assert final is not None
    assert (final.status, final.version) == (Status.CONFIRMED, 5)
    assert final.route == {"venue": "raydium", "amountOut": "210.5"}  # Decimal -> string
    assert (final.tx_signature, final.transaction) == ("sig", {"instructions": ["swap"]})
    assert final.amount_out == Decimal("210.123456")
    assert final.executed_price == Decimal("140.08")
    assert final.to_dict()["amountOut"] == "210.123456"


def test_two_concurrent_deliveries_of_one_transition_apply_it_once(make_database, new_order):
    order = new_order()
    stores = [Store(make_database()), Store(make_database())]
    barrier = threading.Barrier(2, timeout=10)
    outcomes: list[Outcome] = []

    def deliver(each: Store) -> None:
        barrier.wait()
        outcomes.append(each.transition(order.id, Status.PENDING, Status.ROUTING).outcome)

    threads = [threading.Thread(target=deliver, args=(each,)) for each in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == sorted([Outcome.APPLIED, Outcome.DUPLICATE])
    events = stores[0].get_events(order.id)
    assert [e.to_status for e in events] == [Status.PENDING, Status.ROUTING]


def test_a_duplicate_transition_is_reported_and_writes_nothing(
    store, new_order, messages_for, outbox_of, snapshot
):
    order = new_order()
    applied = store.transition(
        order.id, Status.PENDING, Status.ROUTING, outbox=messages_for(order.id, Status.ROUTING)
    )
    assert [row.topic for row in applied.outbox] == ["notify", "step"]  # ids, to publish
    assert applied.outbox == outbox_of(order.id)[2:]  # after the two of creation
    before = snapshot(order.id)

    again = store.transition(
        order.id,
        Status.PENDING,
        Status.ROUTING,
        data={"late": True},
        outbox=[OutboxMessage("notify", {}, f"{order.id}:new-key")],
    )

    assert again.outcome is Outcome.DUPLICATE
    assert again.order is not None and again.order.status is Status.ROUTING
    assert (again.event, again.outbox) == (None, [])
    assert snapshot(order.id) == before


def test_an_out_of_order_transition_is_reported_and_writes_nothing(store, new_order, snapshot):
    order = new_order()
    before = snapshot(order.id)

    result = store.transition(order.id, Status.SUBMITTED, Status.CONFIRMED)

    assert result.outcome is Outcome.OUT_OF_ORDER
    assert snapshot(order.id) == before


def test_an_illegal_transition_is_refused_before_anything_is_written(
    store, new_order, advance, snapshot
):
    order = new_order()
    advance(order.id, HAPPY_PATH)
    before = snapshot(order.id)

    assert store.transition(order.id, Status.CONFIRMED, Status.ROUTING).outcome is Outcome.ILLEGAL
    assert store.transition(order.id, Status.PENDING, Status.CONFIRMED).outcome is Outcome.ILLEGAL
    assert snapshot(order.id) == before


def test_a_transition_of_an_unknown_order_is_not_found(store):
    result = store.transition(uuid.uuid4(), Status.PENDING, Status.ROUTING)
    assert (result.outcome, result.order) == (Outcome.NOT_FOUND, None)


def test_a_step_message_for_a_failed_order_is_a_stale_duplicate(store, new_order, advance):
    order = new_order()
    advance(order.id, [Status.PENDING, Status.ROUTING, Status.FAILED])

    result = store.transition(order.id, Status.ROUTING, Status.BUILDING)

    assert result.outcome is Outcome.DUPLICATE
    assert result.order is not None and result.order.status is Status.FAILED


def test_a_failed_order_must_say_why(store, new_order):
    order = new_order()

    with pytest.raises(psycopg.errors.CheckViolation):
        store.transition(order.id, Status.PENDING, Status.FAILED)

    failed = store.transition(
        order.id, Status.PENDING, Status.FAILED, changes={"failure_reason": "no route"}
    )
    assert failed.order is not None and failed.order.failure_reason == "no route"


def test_a_transition_may_only_change_whitelisted_columns(store, new_order, snapshot):
    order = new_order()
    before = snapshot(order.id)

    with pytest.raises(ValueError, match="status"):
        store.transition(order.id, Status.PENDING, Status.ROUTING, changes={"status": "confirmed"})

    assert snapshot(order.id) == before


@pytest.mark.parametrize(
    ("data", "payload", "error"),
    [
        ({}, {"bad": object()}, TypeError),  # client side: the outbox payload won't encode
        ({"bad": "nul\x00"}, {}, psycopg.errors.UntranslatableCharacter),  # server side
    ],
    ids=["outbox-payload-unencodable", "event-data-refused-by-postgres"],
)
def test_a_failure_after_the_update_leaves_no_state_change_event_or_outbox_row(
    store, new_order, data, payload, error, snapshot
):
    order = new_order()
    before = snapshot(order.id)

    with pytest.raises(error):
        store.transition(
            order.id,
            Status.PENDING,
            Status.ROUTING,
            data=data,
            changes={"route": {"venue": "meteora"}},
            outbox=[OutboxMessage("build", payload, f"{order.id}:build")],
        )

    assert snapshot(order.id) == before
    assert store.get_order(order.id).route is None  # type: ignore[union-attr]


# --- attempts ---------------------------------------------------------------------------


def test_failed_attempts_are_counted_and_reset_by_the_next_transition(store, new_order):
    order = new_order()

    assert store.record_failed_attempt(order.id, Status.PENDING, "venue timeout") == 1
    assert store.record_failed_attempt(order.id, Status.PENDING, "venue down") == 2
    counted = store.get_order(order.id)
    assert counted is not None
    assert (counted.attempts, counted.last_error, counted.version) == (2, "venue down", 1)

    moved = store.transition(order.id, Status.PENDING, Status.ROUTING)
    assert moved.order is not None and moved.order.attempts == 0
    # A stale retry of the old step counts nothing.
    assert store.record_failed_attempt(order.id, Status.PENDING, "late") is None
    assert store.record_failed_attempt(uuid.uuid4(), Status.PENDING, "?") is None


def test_unknown_ids_read_as_missing(store):
    # Malformed ids never get this far: the API and the queue decoder parse them.
    assert store.get_order(uuid.uuid4()) is None
    assert store.get_events(uuid.uuid4()) == []


# --- the database being away -------------------------------------------------------------


@pytest.fixture
def unreachable_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on once we let it go
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/nothing?connect_timeout=1"


def test_a_database_that_is_down_raises_infrastructure_error(make_database, unreachable_url):
    down = Store(make_database(unreachable_url, timeout=0.5))

    with pytest.raises(InfrastructureError) as ping_error:
        down.database.ping()
    with pytest.raises(InfrastructureError):
        down.transition(uuid.uuid4(), Status.PENDING, Status.ROUTING)
    with pytest.raises(InfrastructureError):
        down.get_order(uuid.uuid4())

    assert isinstance(ping_error.value.__cause__, psycopg.OperationalError)


def test_connections_killed_by_a_restart_are_replaced(make_database, migrated_url, db, new_order):
    name = f"restart-{uuid.uuid4().hex[:8]}"
    victim = Store(
        make_database(psycopg.conninfo.make_conninfo(migrated_url, application_name=name))
    )
    order = new_order()
    victim.database.ping()

    # Waits until they are gone, as a restart's are before the server is back.
    killed = db.execute(
        "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
        " WHERE application_name = %s",
        (name,),
    ).fetchone()

    assert killed is not None and killed[0] >= 1
    assert victim.transition(order.id, Status.PENDING, Status.ROUTING).applied


def test_a_statement_on_a_healthy_pooled_connection_is_one_round_trip(
    make_database: Callable[..., Any],
    db: psycopg.Connection[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool's check asks the server only when a connection may be dead: a healthy
    one costs the server each statement once, not a check before it. A killed one is
    still replaced before the caller meets it."""
    database = make_database(max_size=1)  # one connection: every checkout gets it
    with database.connection() as conn:
        pid = conn.info.backend_pid
    trace_path = tmp_path / "libpq.trace"

    def round_trips(statements: int) -> int:
        """The exchanges with the server while `statements` statements run, each on a
        checkout of its own (libpq's trace: one ReadyForQuery ends each)."""
        with trace_path.open("w") as trace:
            conn.pgconn.trace(trace.fileno())
            try:
                for _ in range(statements):
                    with database.statement() as cur:
                        cur.execute("SELECT 1")
            finally:
                conn.pgconn.untrace()  # flushes the trace
        return trace_path.read_text().count("ReadyForQuery")

    # A connection prepares a statement the second time it runs it (database.py): a
    # round trip of its own, once, before the ones counted here.
    for _ in range(2):
        with database.statement() as cur:
            cur.execute("SELECT 1")
    assert round_trips(3) == 3

    # A connection unused for long may have been dropped without a word: checked.
    monkeypatch.setattr(order_engine.database, "QUIET_CHECK_AFTER", 0.0)
    assert round_trips(1) == 2
    monkeypatch.undo()

    # As a restart or failover would: the backend is gone (waited for) before the
    # next checkout, which gets a new connection instead of an error.
    db.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
    with database.statement() as cur:
        cur.execute("SELECT pg_backend_pid() AS pid")
        assert fetch_one(cur)["pid"] != pid
