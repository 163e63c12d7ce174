"""Fixtures of the fault suite: a database of its own, the handler-level stack of
tests/support/handler_stack.py on it, the run's seed, and a note on how to replay it
under every failure.

Each test that takes `stack` (or `fault_seed`) is seeded: it runs once with the run's
seed (id `run-seed`) and once per seed pinned on it with `@pytest.mark.pinned_seeds`
(id `pinned-<seed>`); see tests/faults/seeds.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from order_engine.wiring import reset_engine
from tests.faults.harness import MAX_RECEIVES, VISIBILITY_SECONDS, DeliveryLog, FaultStack
from tests.faults.seeds import reproduce_hint, use_seed
from tests.faults.servers import (
    UpProcess,
    create_database,
    drop_database,
    moto_process,
    new_api_key,
)
from tests.support.handler_stack import handler_stack

# Thresholds the process's own sweeper (wiring.engine().sweeper, which a runtime left
# running by another test module may still fire) never reaches: in this suite, only
# the sweepers a scenario builds itself, with thresholds it chooses, sweep.
NEVER = str(30 * 24 * 3600)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fault_seed" not in metafunc.fixturenames:
        return
    seed = use_seed(metafunc.config)
    pinned = [s for mark in metafunc.definition.iter_markers("pinned_seeds") for s in mark.args]
    params = [pytest.param(seed, id="run-seed")]
    params += [pytest.param(s, id=f"pinned-{s}") for s in dict.fromkeys(pinned) if s != seed]
    metafunc.parametrize("fault_seed", params)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    callspec = getattr(item, "callspec", None)
    if report.failed and callspec is not None and "fault_seed" in callspec.params:
        report.sections.append(
            ("fault seed", reproduce_hint(callspec.params["fault_seed"], item.nodeid))
        )
    return report


@pytest.fixture(scope="session")
def fault_database_url(database_url: str) -> Iterator[str]:
    """A migrated database for the fault suite alone: its sweepers sweep only its
    orders, and no other test's rows can look lost to its checker."""
    url = create_database(database_url, "order_engine_faults")
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def _fault_stack(fault_database_url: str) -> Iterator[FaultStack]:
    env = {
        # 0.2 s, 0.4 s, 0.8 s round to 0, 0, 1: transient retries come back at once.
        "ORDER_RETRY_BASE_SECONDS": "0.2",
        "ORDER_STUCK_AFTER_SECONDS": NEVER,
        "OUTBOX_GRACE_SECONDS": NEVER,
        "RATE_LIMIT_PER_MINUTE": "0",
        "DB_POOL_MAX": "8",
    }
    with handler_stack(
        FaultStack,
        fault_database_url,
        name="fault-suite",
        env=env,
        also_restore=["DEX_SEED"],
        max_receive_count=MAX_RECEIVES,
        visibility_timeout=VISIBILITY_SECONDS,
    ) as started:
        yield started


@pytest.fixture
def stack(
    _fault_stack: FaultStack, fault_seed: int, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultStack]:
    """The stack on brand-new queues, with the seed's venues, recording deliveries."""
    monkeypatch.setenv("DEX_SEED", str(fault_seed))
    _fault_stack.seed = fault_seed
    _fault_stack.accepted = []
    _fault_stack.log = DeliveryLog().install(monkeypatch)
    _fault_stack.use_new_queues()
    yield _fault_stack
    reset_engine()


@pytest.fixture
def scratch_database_url(database_url: str) -> Iterator[str]:
    """A migrated database of this test's own on the session's server, which it may
    break (rename tables, kill connections) without touching anyone else's."""
    url = create_database(database_url, "order_engine_scratch")
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def up(scratch_database_url: str, tmp_path: Path) -> Iterator[Callable[..., UpProcess]]:
    """Makes `order-engine up` subprocesses on a database of the test's own and a moto
    server that outlives them; whatever still runs at the end is stopped."""
    with moto_process() as sqs_url:
        started: list[UpProcess] = []
        key = new_api_key(scratch_database_url)

        def make(*args: str, **env: str) -> UpProcess:
            process = UpProcess(
                scratch_database_url, sqs_url, tmp_path, key, env=env, extra_args=args
            )
            started.append(process)
            return process

        try:
            yield make
        finally:
            for process in started:
                if process.process is not None:
                    process.stop()
