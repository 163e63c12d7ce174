"""PostgreSQL breaks under load: records fail and come back, nothing is lost, and the
orders complete once it is back (in the manner of Oban's resiliency tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

import order_engine.store
from order_engine.migrate import migrate
from tests.faults.harness import FaultStack
from tests.faults.servers import OwnedPostgres


def execute(url: str, query: str) -> list[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query)
        return cursor.fetchall() if cursor.description else []


class Load:
    """Orders placed over HTTP and the queues delivered, on threads, until stopped:
    what a stack under load does while the database goes away."""

    def __init__(self, stack: FaultStack, *, placers: int = 1) -> None:
        self.stack = stack
        self.answers: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._deliver)]
        self._threads += [threading.Thread(target=self._place) for _ in range(placers)]

    def _guard(self, work: Callable[[], object]) -> None:
        while not self._stop.is_set():
            try:
                work()
            except Exception as exc:  # a failed invocation; the next one runs
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.05)

    def _deliver(self) -> None:
        sweeper = self.stack.new_sweeper()

        def cycle() -> None:
            self.stack.drain_once()
            sweeper.sweep()

        self._guard(cycle)

    def _place(self) -> None:
        def one() -> None:
            status, body = self.stack.post()
            self.answers.append(status)
            if status == 202:
                self.stack.accepted.append(str(body["orderId"]))
            time.sleep(0.02)

        self._guard(one)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self._threads)


def test_the_orders_table_mangled_mid_run_fails_records_and_loses_nothing(
    stack: FaultStack, scratch_database_url: str
) -> None:
    """Oban's trick: the table goes away while steps are in flight (every record of
    the batch fails and comes back), then returns; nothing was half-done."""
    url = scratch_database_url
    with stack.use_database(url):
        orders = [stack.place() for _ in range(6)]
        stack.deliver("route")
        execute(url, "ALTER TABLE orders RENAME TO orders_mangled")
        try:
            for _ in range(3):  # fewer receives than maxReceiveCount: none is parked
                messages = stack.receive_all("build", len(orders))
                answer = stack.deliver("build", messages)
                assert len(answer["batchItemFailures"]) == len(orders)
                stack.release("build", messages)  # back at once, as after the timeout
            rows = execute(url, "SELECT DISTINCT status FROM orders_mangled")
            assert rows == [("routing",)]
        finally:
            execute(url, "ALTER TABLE orders_mangled RENAME TO orders")

        report = stack.check()
        assert report.statuses["confirmed"] + report.statuses["failed"] == len(orders)
        assert report.retries >= 3 * len(orders)


def test_connections_killed_again_and_again_under_load_lose_nothing(
    stack: FaultStack, scratch_database_url: str
) -> None:
    url = scratch_database_url
    kill = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    with stack.use_database(url):
        for _ in range(4):
            stack.place()
        with Load(stack) as load:
            for _ in range(8):
                time.sleep(0.15)
                execute(url, kill)
        assert set(load.answers) <= {202, 503}, load.answers  # never a 500
        stack.check(every_order_in_database=True)


def test_after_every_idle_connection_was_killed_the_next_request_gets_a_new_one_at_once(
    stack: FaultStack, scratch_database_url: str
) -> None:
    """A restart, a failover or a proxy drops every idle connection at once. The pool
    checks a connection before handing it out; the next request must not meet the dead
    ones one by one, with the pool's back-off (1 s, 2 s…) in between, until its 3 s
    run out and it answers 503 although the database is up."""
    url = scratch_database_url
    with stack.use_database(url):
        order_id = stack.place()
        database = stack.engine.database
        barrier = threading.Barrier(6, timeout=10)

        def busy() -> None:  # six connections at once: the pool grows to six
            with database.transaction() as cur:
                barrier.wait()
                cur.execute("SELECT 1")

        threads = [threading.Thread(target=busy) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        assert database._pool.get_stats()["pool_available"] >= 4
        execute(  # waits until they are gone, as a restart's are before it is back
            url,
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )

        started = time.monotonic()
        status, body = stack.post()
        assert status == 202, body
        assert time.monotonic() - started < 1.0
        stack.check([order_id, str(body["orderId"])])


def test_postgres_crashed_and_restarted_under_load_loses_nothing(
    stack: FaultStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server of the test's own is stopped at once (no checkpoint: crash recovery at
    the next start) while orders are placed and stepped, one step's write caught on its
    way to the server, then started again."""
    server = OwnedPostgres(tmp_path / "pgdata")
    inside, crashed = threading.Event(), threading.Event()
    write_order = order_engine.store.write_order

    def caught_in_the_crash(cur: Any, query: Any, params: Any, messages: Any) -> Any:
        is_a_step = any(message.topic != "route" for message in messages)  # not a POST
        if is_a_step and not inside.is_set():
            inside.set()
            crashed.wait(10)
        return write_order(cur, query, params, messages)

    try:
        migrate(server.url)
        with stack.use_database(server.url):
            for _ in range(6):
                stack.place()
            monkeypatch.setattr(order_engine.store, "write_order", caught_in_the_crash)
            with Load(stack, placers=2) as load:
                assert inside.wait(10)
                server.crash()
                crashed.set()
                time.sleep(1.0)
                server.start()
                time.sleep(0.5)
            assert set(load.answers) <= {202, 503}, load.answers  # never a 500
            report = stack.check(every_order_in_database=True)
            assert report.orders >= 6
            # The transaction caught in the crash failed its record, which came back.
            assert any(d.result == "error" for d in stack.log.deliveries), report.summary()
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _quiet_pool(caplog: pytest.LogCaptureFixture) -> None:
    # The pool logs every failed reconnection while the server is down: expected here.
    caplog.set_level("CRITICAL", logger="psycopg.pool")
