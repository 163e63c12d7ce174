"""Ctrl-C in the middle of a load, then a restart: every accepted order still finishes.

`order-engine up` runs as a real subprocess (as a user runs it) against a moto server
and the session's PostgreSQL that both outlive it, so what was in flight when it
stopped is still on its queues, or in the outbox, when it comes back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from order_engine.orders import HAPPY_PATH
from order_engine_cli.client import TERMINAL, ApiError
from tests.faults.servers import UpProcess
from tests.support.aws import moto_server

HAPPY = [status.value for status in HAPPY_PATH]
ORDER = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "slippageBps": 500}


@pytest.fixture
def sqs_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


def test_ctrl_c_mid_load_then_restart_brings_every_accepted_order_to_an_end(
    migrated_url: str, sqs_url: str, tmp_path: Path, fresh_api_key: str
) -> None:
    stack = UpProcess(
        migrated_url,
        sqs_url,
        tmp_path,
        fresh_api_key,
        # At the default 60x the sweeper fires every second, so a sweep re-driving a
        # backlog through moto outlasts dozens of its successors: they must find the
        # turn taken and return rather than hold pooled connections the steps need.
        env={"ORDER_STUCK_AFTER_SECONDS": "5", "OUTBOX_GRACE_SECONDS": "1"},
    )
    stack.start()
    accepted: list[str] = []

    def load() -> None:  # places orders until the stack stops answering
        while True:
            try:
                accepted.append(stack.client.place(ORDER)["orderId"])
            except (OSError, ApiError):
                return

    loader = threading.Thread(target=load)
    loader.start()
    time.sleep(1.5)
    assert stack.stop() == 0, stack.log_tail()
    loader.join()
    unfinished = [oid for oid in accepted if _status(migrated_url, oid) not in TERMINAL]
    assert len(accepted) >= 5 and unfinished, (len(accepted), unfinished)

    stack.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            statuses = {oid: _status(migrated_url, oid) for oid in accepted}
            if all(status in TERMINAL for status in statuses.values()):
                break
            time.sleep(1)
        stuck = {oid: status for oid, status in statuses.items() if status not in TERMINAL}
        assert not stuck, (stuck, _log_lines_about(stack, stuck))
        for order_id in accepted:
            history = [event["status"] for event in stack.client.get(order_id)["events"]]
            assert history[:-1] == HAPPY[: len(history) - 1], history
    finally:
        stack.stop()


def _log_lines_about(stack: UpProcess, order_ids: Collection[str]) -> list[str]:
    """What the stack logged about these orders (both runs): why they did not end."""
    text = stack.log_path.read_text(errors="replace") if stack.log_path.exists() else ""
    return [line for line in text.splitlines() if any(oid in line for oid in order_ids)][-40:]


def _status(database_url: str, order_id: str) -> str:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status FROM orders WHERE id = %s", (order_id,)).fetchone()
    assert row is not None
    return str(row[0])
