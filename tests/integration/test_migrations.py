"""The migration runner against real, freshly created databases."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from order_engine.errors import InfrastructureError
from order_engine.migrate import Migration, load_migrations, migrate
from order_engine.orders import Status

ROOT = Path(__file__).resolve().parents[2]


def recorded(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        query = "SELECT version, name FROM schema_migrations ORDER BY version"
        return conn.execute(query).fetchall()


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {name for (name,) in rows}


def test_the_package_holds_numbered_migrations_starting_at_one():
    migrations = load_migrations()

    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "initial"


def test_migrating_twice_applies_each_version_once(fresh_database_url):
    everything = [m.version for m in load_migrations()]

    assert migrate(fresh_database_url) == everything
    assert migrate(fresh_database_url) == []
    assert [version for version, _ in recorded(fresh_database_url)] == everything
    assert {
        "orders",
        "order_events",
        "outbox",
        "connections",
        "subscriptions",
        "idempotency_keys",
        "dex_submissions",
    } <= tables(fresh_database_url)


def test_concurrent_runners_on_a_fresh_database_apply_each_version_once(fresh_database_url):
    runners = 4
    barrier = threading.Barrier(runners, timeout=10)
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            applied.append(migrate(fresh_database_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    everything = [m.version for m in load_migrations()]
    assert errors == []
    assert sorted(applied) == [[], [], [], everything]  # one runner did it all
    assert [version for version, _ in recorded(fresh_database_url)] == everything


def test_a_failing_migration_leaves_no_trace_and_can_be_fixed(fresh_database_url):
    initial = load_migrations()[:1]
    broken = Migration(2, "broken", "CREATE TABLE half_done (id int); SELEC nonsense;")

    with pytest.raises(psycopg.errors.SyntaxError):
        migrate(fresh_database_url, [*initial, broken])

    assert recorded(fresh_database_url) == [(1, "initial")]  # the first one stays applied
    assert "half_done" not in tables(fresh_database_url)

    fixed = Migration(2, "fixed", "CREATE TABLE half_done (id int);")
    assert migrate(fresh_database_url, [*initial, fixed]) == [2]
    assert "half_done" in tables(fresh_database_url)


def test_the_command_line_migrates_database_url(fresh_database_url):
    env = {**os.environ, "DATABASE_URL": fresh_database_url}
    command = [sys.executable, "-m", "order_engine.migrate"]

    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    assert first.returncode == 0, first.stderr
    assert "applied [1" in first.stdout
    assert (second.returncode, second.stdout.strip()) == (0, "the database is up to date")


def test_migrating_an_unreachable_database_is_an_infrastructure_error():
    with pytest.raises(InfrastructureError):
        migrate("postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=1")


def test_every_status_of_the_engine_is_one_the_schema_accepts(fresh_database_url):
    """The status checks of 0001 are replaced by later migrations as statuses are added:
    each Status must be storable as an order's status and as both ends of an event."""
    migrate(fresh_database_url)
    with psycopg.connect(fresh_database_url) as conn:
        checks = [
            conn.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s", (name,)
            ).fetchone()[0]  # type: ignore[index]
            for name in (
                "orders_status_check",
                "order_events_from_status_check",
                "order_events_to_status_check",
            )
        ]
    for status in Status:
        for check in checks:
            assert f"'{status.value}'::text" in check, f"{status} is refused by {check}"
