"""How `order-engine up` sizes each sandbox's database pool (DB_POOL_MAX)."""

from __future__ import annotations

import pytest

from order_engine_cli.up import SANDBOX_DB_POOL, _pool_env


def test_every_sandbox_gets_the_smallest_pool_the_engine_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DB_POOL_MAX", raising=False)
    assert _pool_env() == {"DB_POOL_MAX": str(SANDBOX_DB_POOL)}


def test_a_pool_size_from_the_environment_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_MAX", "7")
    assert _pool_env() == {}
