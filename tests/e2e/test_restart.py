"""Ctrl-C in the middle of a load, then a restart: every accepted order still finishes.

`order-engine up` runs as a real subprocess (as a user runs it) against a moto server
and the session's PostgreSQL that both outlive it, so what was in flight when it
stopped is still on its queues, or in the outbox, when it comes back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from order_engine_cli.client import TERMINAL, ApiError, OrderClient
from tests.support.aws import FAKE_CREDENTIALS, free_port, moto_server

ROOT = Path(__file__).resolve().parents[2]
HAPPY = ["pending", "routing", "building", "submitted"]
ORDER = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "slippageBps": 500}


class Stack:
    """`order-engine up` as a subprocess, started and stopped like a user would."""

    def __init__(self, database_url: str, sqs_url: str, log: Path, api_key: str) -> None:
        self.http_port, self.ws_port = free_port(), free_port()
        self.command = [
            str(Path(sys.executable).parent / "order-engine"),
            "up",
            "--sqs",
            sqs_url,
            "--database-url",
            database_url,
            "--http-port",
            str(self.http_port),
            "--ws-port",
            str(self.ws_port),
            "--latency-scale",
            "1",
            "--schedule-speed",
            "60",
            # Never the project's .data/dev-api-key: this is the tests' database.
            "--dev-key-file",
            str(log.parent / "dev-api-key"),
        ]
        self.env = {
            **os.environ,
            **FAKE_CREDENTIALS,
            "ORDER_STUCK_AFTER_SECONDS": "5",
            "OUTBOX_GRACE_SECONDS": "1",
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.client = OrderClient(f"http://127.0.0.1:{self.http_port}", timeout=5, api_key=api_key)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=log, cwd=ROOT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.client.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError("order-engine up did not become healthy")

    def interrupt(self) -> int:
        """Ctrl-C, as a user presses it, and wait for a clean exit."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)


@pytest.fixture
def sqs_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


def test_ctrl_c_mid_load_then_restart_brings_every_accepted_order_to_an_end(
    migrated_url: str, sqs_url: str, tmp_path: Path, fresh_api_key: str
) -> None:
    stack = Stack(migrated_url, sqs_url, tmp_path / "up.log", fresh_api_key)
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
    assert stack.interrupt() == 0, stack.log.read_text()[-3000:]
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
        assert all(status in TERMINAL for status in statuses.values()), {
            oid: status for oid, status in statuses.items() if status not in TERMINAL
        }
        for order_id in accepted:
            history = [event["status"] for event in stack.client.get(order_id)["events"]]
            assert history[:-1] == HAPPY[: len(history) - 1], history
    finally:
        stack.interrupt()


def _status(database_url: str, order_id: str) -> str:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status FROM orders WHERE id = %s", (order_id,)).fetchone()
    assert row is not None
    return str(row[0])
