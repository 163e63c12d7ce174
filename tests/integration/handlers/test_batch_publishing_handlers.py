"""A step worker's batch of records publishes the next step's messages together: one
SendMessageBatch for the whole batch, after every record's commit, not one request per
record, and one statement marks its outbox rows and moves its subscribers' cursors.
Each event still reaches its subscriber as its own transition commits. Over the real
handlers, real PostgreSQL and real SQS (moto server)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import EndpointConnectionError

from tests.support.handler_stack import Stack
from tests.support.statements import counted_statements

BATCH = 10


@contextmanager
def sqs_requests(stack: Stack, *, refuse: str | None = None) -> Iterator[Counter[str]]:
    """Count the engine's SendMessage/SendMessageBatch requests by queue (and, under
    "<queue> entries", their messages); with `refuse`, every send to that queue fails
    as if SQS were unreachable."""
    requests: Counter[str] = Counter()

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in ("SendMessage", "SendMessageBatch"):
            queue = params["QueueUrl"].rsplit("-", 1)[-1]
            requests[queue] += 1
            requests[f"{queue} entries"] += len(params.get("Entries", [params]))
            if queue == refuse:
                raise EndpointConnectionError(endpoint_url=params["QueueUrl"])

    events = stack.engine.sqs.meta.events
    events.register("before-parameter-build.sqs", count)
    try:
        yield requests
    finally:
        events.unregister("before-parameter-build.sqs", count)


def receive_all(stack: Stack, topic: str, count: int) -> list[dict[str, Any]]:
    """`count` messages of `topic`'s queue, received in as many calls as it takes."""
    messages: list[dict[str, Any]] = []
    for _ in range(20):
        messages += stack.receive(topic)
        if len(messages) >= count:
            break
    assert len(messages) == count
    return messages


def placed_and_followed(stack: Stack) -> tuple[list[str], list[str]]:
    """A batch's worth of orders, each followed by a connection of its own."""
    orders = [stack.place() for _ in range(BATCH)]
    connections = [stack.open_connection(f"c-{uuid.uuid4().hex[:8]}") for _ in orders]
    for connection, order_id in zip(connections, orders, strict=True):
        assert stack.engine.subscriptions.subscribe(connection, order_id)
    return orders, connections


def test_a_batch_of_ten_route_records_sends_the_ten_build_messages_in_one_request(
    fresh: Stack,
) -> None:
    orders, connections = placed_and_followed(fresh)
    routes = receive_all(fresh, "route", BATCH)

    with sqs_requests(fresh) as requests:
        answer = fresh.deliver("route", routes)

    assert answer["batchItemFailures"] == []
    assert requests == {"build": 1, "build entries": BATCH}
    builds = receive_all(fresh, "build", BATCH)
    assert sorted(json.loads(m["Body"])["orderId"] for m in builds) == sorted(orders)
    # Every event went straight to its subscriber, and no notification was needed.
    for connection in connections:
        assert fresh.management.messages(connection)[-1]["status"] == "routing"
    assert fresh.receive("notify") == []
    assert unsent_rows(fresh, orders) == 0


def test_a_failed_send_leaves_every_row_of_the_batch_for_the_relay(fresh: Stack) -> None:
    orders, connections = placed_and_followed(fresh)
    routes = receive_all(fresh, "route", BATCH)

    with sqs_requests(fresh, refuse="build") as requests:
        answer = fresh.deliver("route", routes)

    # The orders moved on and their clients heard of it; one request failed, and with
    # it no message was lost: each order's build message waits in the outbox.
    assert answer["batchItemFailures"] == []
    assert requests == {"build": 1, "build entries": BATCH}
    assert {status_of(fresh, order_id) for order_id in orders} == {"routing"}
    assert all(fresh.management.messages(c)[-1]["status"] == "routing" for c in connections)
    assert fresh.receive("build") == []
    assert unsent_rows(fresh, orders) == BATCH

    # At least the batch's rows: the database is the worker's, and a module that ran
    # before may have left rows of its own unsent (tests/integration/test_store_messaging).
    assert fresh.engine.outbox.relay(older_than_seconds=0) >= BATCH
    builds = receive_all(fresh, "build", BATCH)
    assert sorted(json.loads(m["Body"])["orderId"] for m in builds) == sorted(orders)
    assert unsent_rows(fresh, orders) == 0


def test_a_batch_moves_its_subscribers_cursors_in_the_statement_that_marks_its_rows(
    fresh: Stack,
) -> None:
    orders, connections = placed_and_followed(fresh)
    for order_id in orders:
        fresh.engine.notifier.deliver(uuid.UUID(order_id))  # the snapshot: pending
    routes = receive_all(fresh, "route", BATCH)

    with counted_statements(fresh.engine.database) as statements:
        answer = fresh.deliver("route", routes)

    assert answer["batchItemFailures"] == []
    # The batch's orders read together, then per record its transition (which also
    # reads who lacks its event), then one statement for the whole batch: no read of
    # the subscribers and no UPDATE of a cursor per record.
    assert statements == [1 + BATCH + 1]
    for connection, order_id in zip(connections, orders, strict=True):
        statuses = [m.get("status") for m in fresh.management.messages(connection)]
        assert statuses == ["pending", "routing"]
        assert cursor_of(fresh, connection, order_id) == 2
    assert unsent_rows(fresh, orders) == 0
    # The cursors moved: another pass finds nothing to send.
    assert fresh.engine.notifier.deliver(uuid.UUID(orders[0])) == 0


def cursor_of(stack: Stack, connection: str, order_id: str) -> int:
    with stack.engine.database.statement() as cur:
        cur.execute(
            "SELECT last_seq FROM subscriptions WHERE connection_id = %s AND order_id = %s",
            (connection, order_id),
        )
        row = cur.fetchone()
    assert row is not None
    return int(row["last_seq"])


def unsent_rows(stack: Stack, orders: list[str]) -> int:
    with stack.engine.database.statement() as cur:
        cur.execute(
            "SELECT count(*) AS n FROM outbox WHERE order_id = ANY(%s::uuid[]) AND sent_at IS NULL",
            (orders,),
        )
        row = cur.fetchone()
    assert row is not None
    return int(row["n"])


def status_of(stack: Stack, order_id: str) -> str:
    order = stack.engine.store.get_order(order_id)
    assert order is not None
    return order.status.value
