"""Handler-level fixtures: the in-process stack of tests/support/handler_stack.py on the
session's database, with fast retries and fixed venues."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from order_engine.orders import HAPPY_PATH
from tests.support.handler_stack import Stack, handler_stack


@pytest.fixture(scope="session")
def stack(migrated_url: str) -> Iterator[Stack]:
    env = {"DEX_SEED": "11", "ORDER_RETRY_BASE_SECONDS": "1"}
    with handler_stack(Stack, migrated_url, name="handler-tests", env=env) as started:
        yield started


@pytest.fixture
def fresh(stack: Stack) -> Stack:
    """The stack on empty queues, with a new engine (default, fault-free venues)."""
    stack.use_new_queues()
    return stack


HAPPY = list(HAPPY_PATH)
