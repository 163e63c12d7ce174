"""End-to-end fixtures: the real template.yaml on the local runtime, in this process,
on free ports, with SQS on a moto server and the session's PostgreSQL. Tests talk to
it only over real HTTP and WebSocket sockets, as users do, presenting an API key of the
session's own account (`api_key`), or of another (`other_api_key`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from local_runtime.runtime import LocalRuntime
from order_engine.wiring import reset_engine
from order_engine_cli.client import OrderClient
from tests.support.stack import ROOT, new_api_key, stack_options


@pytest.fixture(scope="session")
def runtime(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    reset_engine()  # the handlers build their engine from the runtime's environment
    options = stack_options(migrated_url, tmp_path_factory.mktemp("runtime"))
    with LocalRuntime(ROOT / "template.yaml", options) as started:
        yield started
    reset_engine()


@pytest.fixture(scope="session")
def api_key(migrated_url: str) -> str:
    return new_api_key(migrated_url, f"e2e-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def other_api_key(migrated_url: str) -> str:
    return new_api_key(migrated_url, f"e2e-other-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def fresh_api_key(migrated_url: str) -> str:
    """A key of its own, for a test whose load must not share a rate-limit window."""
    return new_api_key(migrated_url, f"e2e-own-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def client(runtime: LocalRuntime, api_key: str) -> OrderClient:
    return OrderClient(runtime.http_url, api_key=api_key)
