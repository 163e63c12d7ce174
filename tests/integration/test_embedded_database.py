"""The embedded PostgreSQL that `order-engine up` starts: room for every sandbox's pool,
and the work per statement it saves them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from local_runtime.function_sandboxes import runtime_budget
from order_engine.database import Database
from order_engine.migrate import migrate
from order_engine_cli.postgres import max_connections, open_database
from order_engine_cli.up import SANDBOX_DB_POOL, _connections_needed


@pytest.fixture(scope="module")
def embedded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new embedded server of this module's own, migrated."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("DATABASE_URL", raising=False)
        database = open_database(tmp_path_factory.mktemp("embedded") / "pg")
    try:
        migrate(database.url)
        yield database.url
    finally:
        database.stop()


def test_a_new_embedded_server_accepts_the_connections_asked_for_and_keeps_them(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    database = open_database(tmp_path / "pg", min_connections=180)
    try:
        assert max_connections(database.url) == 180
    finally:
        database.stop()
    again = open_database(tmp_path / "pg")  # the next start, asking nothing
    try:
        assert max_connections(again.url) == 180
    finally:
        again.stop()


def test_up_asks_for_every_sandbox_of_its_budget_with_a_full_pool(monkeypatch) -> None:
    monkeypatch.delenv("DB_POOL_MAX", raising=False)
    assert _connections_needed() > runtime_budget(0).total * SANDBOX_DB_POOL
    assert _connections_needed() > 100  # PostgreSQL's default, which a burst reached
    monkeypatch.setenv("DB_POOL_MAX", "5")
    assert _connections_needed() > runtime_budget(0).total * 5


def test_the_pool_plans_each_statement_once_whatever_its_values(embedded_url: str) -> None:
    """A connection's statement is prepared the second time it runs, and planned once
    then: the notifier's order read (`id = ANY`) is not planned anew at every run."""
    database = Database(embedded_url, max_size=1)
    try:
        with database.connection() as conn:
            for n in range(1, 4):
                ids = [uuid.uuid4() for _ in range(n)]
                conn.execute("SELECT * FROM orders WHERE id = ANY(%s)", (ids,))
            plans = conn.execute(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement = 'SELECT * FROM orders WHERE id = ANY($1)'"
            ).fetchall()
    finally:
        database.close()
    assert plans == [(2, 0)]


def test_a_table_that_churns_is_read_by_its_key_not_whole(embedded_url: str) -> None:
    """connections gets a row per order and loses it when the socket closes: a few live
    rows over pages of dead ones until autovacuum comes. $disconnect's DELETE looks its
    row up in the primary key instead of reading every page."""
    with psycopg.connect(embedded_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO connections (connection_id)"
            " SELECT 'churn-' || n FROM generate_series(1, 300) n"
        )
        conn.execute("DELETE FROM connections WHERE connection_id NOT LIKE 'churn-_'")
        conn.execute("ANALYZE connections")
        plan = conn.execute(
            "EXPLAIN (GENERIC_PLAN) DELETE FROM connections WHERE connection_id = $1"
        ).fetchall()
        conn.execute("DELETE FROM connections WHERE connection_id LIKE 'churn-%'")
    assert "Index Scan using connections_pkey" in "\n".join(line for (line,) in plan)
