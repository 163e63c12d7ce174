"""SQS stalls (its process SIGSTOPped) while orders are posted: once an order is
committed its publishing is best effort (the sweeper relays what is left), so every
POST whose order was committed answers 202 within a short bound, `/health` answers 503
naming SQS, and once SQS resumes every order ends. The SQS outage of test_sqs_outage.py,
with a stall instead of a refusal: a stopped process accepts connections and never
answers.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from order_engine_cli.client import OrderClient
from tests.faults.servers import UpProcess, moto_server_process, new_api_key
from tests.support.handler_stack import ORDER

# Publishing gives up after ~4 s (connect 1 s + read 3 s); the rest is the request.
ANSWER_BOUND_SECONDS = 8.0


@pytest.fixture
def stalled_sqs_stack(
    scratch_database_url: str, tmp_path: Path
) -> Iterator[tuple[UpProcess, object]]:
    with moto_server_process() as (sqs_url, sqs_process):
        stack = UpProcess(
            scratch_database_url,
            sqs_url,
            tmp_path,
            new_api_key(scratch_database_url),
            env={"ORDER_STUCK_AFTER_SECONDS": "3", "OUTBOX_GRACE_SECONDS": "1"},
        )
        stack.start()
        try:
            yield stack, sqs_process
        finally:
            stack.stop()


def committed(url: str, order_ids: list[str]) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id::text FROM orders WHERE id = ANY(%s::uuid[])", (order_ids,)
        ).fetchall()
    return {row[0] for row in rows}


def idempotent_ids(url: str, keys: list[str]) -> dict[str, str]:
    """Idempotency-Key -> order id, for the orders that were committed."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT key, order_id::text FROM idempotency_keys WHERE key = ANY(%s)", (keys,)
        ).fetchall()
    return dict(rows)


def test_a_stalled_sqs_costs_a_post_its_publish_never_its_202(
    stalled_sqs_stack: tuple[UpProcess, object], fault_seed: int
) -> None:
    stack, sqs_process = stalled_sqs_stack
    keys = [str(uuid.uuid4()) for _ in range(6)]
    # A patient client: how long each answer takes is for the test to judge.
    client = OrderClient(stack.client.api_url, timeout=30, api_key=stack.client.api_key)

    def post(key: str) -> tuple[int, float]:
        started = time.monotonic()
        status, _ = client.request(
            "POST", "/api/orders/execute", ORDER, headers={"Idempotency-Key": key}
        )
        return status, time.monotonic() - started

    sqs_process.send_signal(signal.SIGSTOP)  # type: ignore[attr-defined]
    try:
        with ThreadPoolExecutor(3) as pool:
            answers = dict(zip(keys, pool.map(post, keys), strict=True))
        health_status, health = client.request("GET", "/health")
    finally:
        sqs_process.send_signal(signal.SIGCONT)  # type: ignore[attr-defined]

    placed = idempotent_ids(stack.database_url, keys)
    assert placed, "no order was committed while SQS was stalled"
    for key, order_id in placed.items():
        status, took = answers[key]
        assert status == 202, (order_id, status, stack.log_tail())
        assert took < ANSWER_BOUND_SECONDS, (order_id, took)
    assert health_status == 503, health
    assert health["checks"]["sqs"].startswith("down"), health
    assert health["checks"]["postgres"] == "ok", health

    # SQS is back: the sweeper relays the route messages and every order ends.
    accepted = list(placed.values())
    checker = stack.checker(fault_seed)
    unfinished = checker.settle(accepted, every_order_in_database=True, timeout=60)
    report = checker.check(accepted, every_order_in_database=True)
    print(report.summary())
    report.assert_ok()
    assert not unfinished
    assert committed(stack.database_url, accepted) == set(accepted)
