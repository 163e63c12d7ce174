"""End-to-end fixtures: the real template.yaml on the local runtime, in this process,
on free ports, with SQS on a moto server and the session's PostgreSQL. Tests talk to
it only over real HTTP and WebSocket sockets, as users do, presenting an API key of the
session's own account (`api_key`), or of another (`other_api_key`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_runtime.options import RuntimeOptions
from local_runtime.runtime import LocalRuntime
from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts
from order_engine.wiring import reset_engine
from order_engine_cli.client import OrderClient

ROOT = Path(__file__).resolve().parents[2]


def stack_options(database_url: str, tmp: Path, **overrides: object) -> RuntimeOptions:
    options = RuntimeOptions(
        sqs="moto",
        http_port=0,
        ws_port=0,
        parameters={"DatabaseUrl": database_url, "DexLatencyScale": "0"},
        correlation_keys=("orderId",),
        schedule_speed=60,
        poll_wait_seconds=1,
        shutdown_timeout=5,
        data_dir=tmp,
    )
    for key, value in overrides.items():
        setattr(options, key, value)
    return options


@pytest.fixture(scope="session")
def runtime(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    reset_engine()  # the handlers build their engine from the runtime's environment
    options = stack_options(migrated_url, tmp_path_factory.mktemp("runtime"))
    with LocalRuntime(ROOT / "template.yaml", options) as started:
        yield started
    reset_engine()


def _new_key(database_url: str, name: str) -> str:
    with AccountStore(database_url, max_size=1) as store:
        return Accounts(store).create_key(name).key


@pytest.fixture(scope="session")
def api_key(migrated_url: str) -> str:
    return _new_key(migrated_url, f"e2e-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def other_api_key(migrated_url: str) -> str:
    return _new_key(migrated_url, f"e2e-other-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def fresh_api_key(migrated_url: str) -> str:
    """A key of its own, for a test whose load must not share a rate-limit window."""
    return _new_key(migrated_url, f"e2e-own-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def client(runtime: LocalRuntime, api_key: str) -> OrderClient:
    return OrderClient(runtime.http_url, api_key=api_key)
