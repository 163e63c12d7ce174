"""How `order-engine up` sizes each process's database pool (DB_POOL_MAX)."""

from __future__ import annotations

import pytest

from order_engine_cli.up import MAX_DB_CONNECTIONS, _pool_env


@pytest.fixture(autouse=True)
def no_pool_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DB_POOL_MAX", raising=False)


@pytest.mark.parametrize(
    ("concurrency", "workers", "per_process"),
    [(10, 0, 20), (40, 0, 40), (10, 2, 20), (40, 2, 26), (10, 4, 16)],
)
def test_every_process_gets_twice_the_concurrency_within_the_servers_connections(
    concurrency: int, workers: int, per_process: int
) -> None:
    pool = int(_pool_env(concurrency, workers)["DB_POOL_MAX"])
    assert pool == per_process
    assert pool * (workers + 1) <= MAX_DB_CONNECTIONS


def test_a_pool_size_from_the_environment_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_MAX", "7")
    assert _pool_env(10, 2) == {}
