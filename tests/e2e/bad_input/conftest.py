"""Bad input over the real sockets, against template.yaml running on the local runtime:
the HTTP API and the WebSocket API get malformed, hostile and oversized requests and
frames, one module per surface.

Each case must be answered (or closed) cleanly: never a 500, never API Gateway's 502 of
a crashed handler, never a hung socket, and nothing written. Every bad request speaks
for an account of its own ("mallory"), whose rows in orders, order_events, outbox and
idempotency_keys are counted before and after each case, along with the orders of all
accounts; at the end she must have none (test_stack_after_bad_input.py, run last). And
the stack must still be healthy and confirm a good order, over HTTP and over a socket.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

pytest.register_assert_rewrite("tests.support.bad_input")

from tests.support.bad_input import Mallory  # noqa: E402
from tests.support.stack import new_api_key  # noqa: E402

HERE = Path(__file__).resolve().parent
LAST = HERE / "test_stack_after_bad_input.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The check of the stack after the barrage runs after every other case here, while
    mallory (a package fixture) is still the account they all spoke for."""
    ours = [i for i, item in enumerate(items) if item.path.parent == HERE]
    if not ours:
        return
    last = [items[i] for i in ours if items[i].path == LAST]
    rest = [item for item in items if item not in last]
    end = max(i for i, item in enumerate(rest) if item.path.parent == HERE)
    items[:] = rest[: end + 1] + last + rest[end + 1 :]


@pytest.fixture(scope="package")
def mallory(migrated_url: str) -> Mallory:
    name = f"e2e-mallory-{uuid.uuid4().hex[:8]}"
    key = new_api_key(migrated_url, name)
    with psycopg.connect(migrated_url) as conn:
        row = conn.execute("SELECT a.id FROM accounts a WHERE a.name = %s", (name,)).fetchone()
    assert row is not None
    return Mallory(key, str(row[0]))


# The functions behind the two APIs: none of them may raise or time out on bad input.
API_FUNCTIONS = frozenset(
    {"ApiFunction", "ConnectFunction", "MessageFunction", "DisconnectFunction"}
)


@pytest.fixture(autouse=True)
def no_function_fails(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every invocation is logged by the runtime, at WARNING when it raised or timed out."""
    caplog.set_level(logging.INFO, logger="local_runtime.invocations")
    yield
    failed = [
        record.getMessage()
        for record in caplog.get_records("call")
        if record.name == "local_runtime.invocations"
        and record.levelno >= logging.WARNING
        and record.getMessage().split(" ", 1)[0] in API_FUNCTIONS
    ]
    assert not failed
