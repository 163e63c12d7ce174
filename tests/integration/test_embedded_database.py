"""The embedded PostgreSQL that `order-engine up` starts has room for every sandbox's pool."""

from __future__ import annotations

from pathlib import Path

from local_runtime.function_sandboxes import runtime_budget
from order_engine_cli.postgres import max_connections, open_database
from order_engine_cli.up import SANDBOX_DB_POOL, _connections_needed


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
