"""An order whose step message was parked in a dead-letter queue resumes when the
operator replays it with `order-engine dlq`, and replaying again changes nothing.
template.yaml on the local runtime, real sockets, SQS on a moto server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from click.testing import CliRunner, Result

from local_runtime.runtime import LocalRuntime
from order_engine.orders import HAPPY_PATH
from order_engine_cli.client import TERMINAL, OrderClient
from order_engine_cli.main import cli

HAPPY = [status.value for status in HAPPY_PATH]
ORDER = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "3", "slippageBps": 500}


def dlq(runtime: LocalRuntime, *args: str) -> Result:
    where = ["--endpoint-url", runtime.sqs_endpoint or "", "--stack-name", "local"]
    result = CliRunner().invoke(cli, ["dlq", *args, *where], env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    return result


@contextmanager
def route_messages_parked(runtime: LocalRuntime) -> Iterator[None]:
    """New orders' route messages go straight to the route DLQ, as if SQS had parked
    them after five failed receives (every function that sends them is reconfigured)."""
    saved = {
        name: environment["ROUTE_QUEUE_URL"]
        for name, environment in runtime.function_environments.items()
        if "ROUTE_QUEUE_URL" in environment
    }
    for name in saved:
        runtime.update_function_environment(
            name, {"ROUTE_QUEUE_URL": runtime.queue_url("RouteDLQ")}
        )
    try:
        yield
    finally:
        for name, url in saved.items():
            runtime.update_function_environment(name, {"ROUTE_QUEUE_URL": url})


def depth(runtime: LocalRuntime, logical_id: str) -> int:
    attributes = runtime.sqs_client().get_queue_attributes(
        QueueUrl=runtime.queue_url(logical_id),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def parked_bodies(runtime: LocalRuntime, logical_id: str) -> list[dict[str, Any]]:
    messages = (
        runtime.sqs_client()
        .receive_message(
            QueueUrl=runtime.queue_url(logical_id), MaxNumberOfMessages=10, VisibilityTimeout=0
        )
        .get("Messages", [])
    )
    return [json.loads(m["Body"]) for m in messages if m["Body"].startswith("{")]


def settle(runtime: LocalRuntime, *queues: str, timeout: float = 20) -> None:
    """Wait until the workers have taken and deleted (acknowledged) everything."""
    deadline = time.monotonic() + timeout
    while any(depth(runtime, queue) for queue in queues):
        assert time.monotonic() < deadline, f"still on {queues}"
        time.sleep(0.2)


def finished(client: OrderClient, order_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (order := client.get(order_id))["status"] not in TERMINAL:
        assert time.monotonic() < deadline, f"order {order_id} is still {order['status']}"
        time.sleep(0.2)
    return order


def test_a_parked_order_completes_after_replay_and_replaying_again_changes_nothing(
    runtime: LocalRuntime, client: OrderClient, migrated_url: str
) -> None:
    with route_messages_parked(runtime):
        placed = client.place(ORDER)
    order_id = placed["orderId"]
    assert {"v": 1, "orderId": order_id, "step": "route"} in parked_bodies(runtime, "RouteDLQ")
    time.sleep(1)
    assert client.get(order_id)["status"] == "pending"  # stuck: its message is parked

    shown = dlq(runtime, "show", "route", "--database-url", migrated_url).output
    assert any(order_id in line and "pending" in line for line in shown.splitlines())

    dlq(runtime, "replay", "--all")

    done = finished(client, order_id)
    assert [event["status"] for event in done["events"]] == HAPPY

    # The same route message parked again, and a build message: stale copies of steps
    # this order has passed, as a replay of an old DLQ would bring back.
    sqs = runtime.sqs_client()
    for step, queue in (("route", "RouteDLQ"), ("build", "BuildDLQ")):
        body = json.dumps({"v": 1, "orderId": order_id, "step": step})
        sqs.send_message(QueueUrl=runtime.queue_url(queue), MessageBody=body)
    dlq(runtime, "replay", "--all", "--order-id", order_id)
    settle(runtime, "RouteQueue", "BuildQueue")
    dlq(runtime, "replay", "--all", "--order-id", order_id)  # nothing left to move

    assert client.get(order_id) == done  # same version, same timeline, nothing new
    for queue in ("RouteDLQ", "BuildDLQ"):
        assert all(body.get("orderId") != order_id for body in parked_bodies(runtime, queue))
