"""Messages that can never be handled park in the dead-letter queue without holding up
the rest; parked orders resume when the operator replays, and replaying again changes
nothing.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from order_engine.orders import Status
from order_engine_cli.main import cli
from tests.faults.harness import MAX_RECEIVES, FaultStack


def parked(stack: FaultStack, topic: str) -> list[str]:
    """The bodies in `topic`'s DLQ (looked at, left in place)."""
    checker = stack.checker()
    checker.dlq_urls = {f"{topic}-dlq": stack.dlq_urls[f"{topic}-dlq"]}
    return [letter.body for letter in checker.dead_letters()]


def replay(stack: FaultStack) -> str:
    endpoint = stack.sqs.meta.endpoint_url
    result = CliRunner().invoke(
        cli,
        ["dlq", "replay", "--all", "--endpoint-url", endpoint, "--stack-name", stack.prefix],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    return result.output


def snapshot(url: str) -> list[Any]:
    """Everything a replay could change, for the orders of this database."""
    with psycopg.connect(url) as conn:
        return [
            conn.execute(
                "SELECT id, status, version, updated_at FROM orders ORDER BY id"
            ).fetchall(),
            conn.execute("SELECT count(*) FROM order_events").fetchall(),
            conn.execute("SELECT count(*), count(sent_at) FROM outbox").fetchall(),
            conn.execute("SELECT signature FROM dex_submissions ORDER BY 1").fetchall(),
        ]


def test_poison_messages_park_in_the_dlq_and_the_rest_of_the_batch_goes_on(
    stack: FaultStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="order_engine.consumers")
    orders = [stack.place() for _ in range(3)]
    poison = {
        "not json {",
        json.dumps({"v": 1, "orderId": str(uuid.uuid4()), "step": "teleport"}),
        json.dumps({"v": 1, "orderId": orders[0], "step": "route"}).replace("route", "ro\x00ute"),
        stack.step_body(orders[0], "build"),  # a build message on the route queue
    }
    for body in poison:
        stack.send("route", body)

    poison_ids: set[str] = set()
    for _ in range(MAX_RECEIVES + 3):
        messages = stack.receive("route")
        if not messages:
            break
        bad = {m["MessageId"] for m in messages if m["Body"] in poison}
        poison_ids |= bad

        answer = stack.deliver("route", messages)

        # Only the poison fails; every good record of the same batch goes through.
        assert {item["itemIdentifier"] for item in answer["batchItemFailures"]} == bad

    assert set(parked(stack, "route")) == poison
    for order_id in orders:
        order = stack.engine.store.get_order(order_id)
        assert order is not None and order.status is not Status.PENDING
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert all(f"poison message {message_id}" in logged for message_id in poison_ids)
    report = stack.check()
    assert report.dead_letters == {"poison": len(poison)}


def test_replaying_the_dead_letter_queues_twice_resumes_parked_orders_once(
    stack: FaultStack, scratch_database_url: str
) -> None:
    url = scratch_database_url
    with stack.use_database(url):
        orders = [stack.place() for _ in range(4)]
        stack.deliver("route")
        stack.send("build", "not json {")
        # The database is broken for longer than maxReceiveCount receives: SQS parks
        # every build message in the build DLQ, and the orders stay in routing.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE orders RENAME TO orders_mangled")
            try:
                for _ in range(MAX_RECEIVES + 3):
                    messages = stack.receive("build")
                    if not messages:
                        break
                    stack.deliver("build", messages)
                    stack.release("build", messages)
            finally:
                conn.execute("ALTER TABLE orders_mangled RENAME TO orders")
        assert len(parked(stack, "build")) == len(orders) + 1

        # What the checker says before the operator acts: parked, unaccounted orders.
        before = stack.checker().check(orders)
        assert len(before.unaccounted_dead_letters) == len(orders)
        assert len(before.lost) == len(orders)

        output = replay(stack)
        assert "1 (1 poison)" in output  # skipped, left for a person to read
        # Replayed messages are new messages: their first receive does not bounce them
        # straight back to the DLQ (the receive-count carry-over of floci #900).
        answer = stack.deliver("build", stack.receive_all("build", len(orders)))
        assert answer["batchItemFailures"] == []
        report = stack.check()
        assert report.statuses["confirmed"] + report.statuses["failed"] == len(orders)
        assert report.dead_letters == {"poison": 1}
        done = snapshot(url)

        replay(stack)  # the second replay: nothing but the poison is left, and it stays
        stack.drain_once()
        assert snapshot(url) == done

        # An old copy turns up in the DLQ again and is replayed: a duplicate, acked.
        stack.sqs.send_message(
            QueueUrl=stack.dlq_urls["build-dlq"], MessageBody=stack.step_body(orders[0], "build")
        )
        replay(stack)
        answer = stack.deliver("build", stack.receive_all("build", 1))
        assert answer["batchItemFailures"] == []
        assert stack.log.of(orders[0])[-1].duplicate
        assert snapshot(url) == done
        stack.check().assert_ok()
