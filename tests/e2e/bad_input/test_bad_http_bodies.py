"""Bad bodies on POST /api/orders/execute: not JSON, too deep, too big, wrong types and
values (the table is tests/support/bad_bodies.py, shared with the WebSocket frames)."""

from __future__ import annotations

import pytest

from local_runtime.runtime import LocalRuntime
from tests.support.bad_bodies import BAD_BODIES
from tests.support.bad_input import HttpCase, Mallory, assert_answered_cleanly

CASES = BAD_BODIES


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_http_input_is_answered_cleanly_and_writes_nothing(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory, case: HttpCase
) -> None:
    assert_answered_cleanly(runtime, migrated_url, mallory, case)
