"""Orders placed and followed over real sockets, against template.yaml on the local runtime."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import boto3
import pytest
import websockets

from local_runtime.runtime import LocalRuntime
from order_engine_cli.client import ApiError, OrderClient, StatusStream, authorization, follow

HAPPY = ["pending", "routing", "building", "submitted", "confirmed"]
# Wide tolerance: these tests are about delivery, not about simulated slippage.
ORDER = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "2", "slippageBps": 500}


async def statuses_of(
    ws_url: str, api_key: str | None, timeout: float = 30
) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event async for event in follow(ws_url, api_key=api_key)]

    return await asyncio.wait_for(collect(), timeout)


def test_a_posted_order_is_followed_through_every_state_with_seq_rising(
    client: OrderClient,
) -> None:
    placed = client.place(ORDER)
    events = asyncio.run(statuses_of(placed["wsUrl"], client.api_key))

    assert [e["status"] for e in events] == HAPPY
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[-1]["data"]["executedPrice"]
    assert client.get(placed["orderId"])["status"] == "confirmed"


def test_an_order_sent_with_execute_on_the_socket_is_followed_the_same_way(
    runtime: LocalRuntime, api_key: str
) -> None:
    async def execute() -> tuple[str, list[dict[str, Any]]]:
        stream, events, order_id = StatusStream(), [], ""
        async with websockets.connect(f"{runtime.ws_url()}?apiKey={api_key}") as socket:
            await socket.send(json.dumps({"action": "execute", "order": ORDER}))
            async for raw in socket:
                message = json.loads(raw)
                if message["type"] == "accepted":
                    order_id = message["orderId"]
                events += stream.accept(message)
                if events and events[-1]["status"] == "confirmed":
                    return order_id, events
        raise AssertionError("socket closed early")

    order_id, events = asyncio.run(asyncio.wait_for(execute(), 30))
    assert order_id and [e["status"] for e in events] == HAPPY
    assert {e["orderId"] for e in events} == {order_id}


def test_subscribing_after_completion_gets_the_snapshot(
    runtime: LocalRuntime, client: OrderClient
) -> None:
    placed = client.place(ORDER)
    asyncio.run(statuses_of(placed["wsUrl"], client.api_key))

    async def late() -> dict[str, Any]:
        headers = authorization(client.api_key)
        async with websockets.connect(runtime.ws_url(), additional_headers=headers) as socket:
            await socket.send(json.dumps({"action": "subscribe", "orderId": placed["orderId"]}))
            return dict(json.loads(await asyncio.wait_for(socket.recv(), 10)))

    snapshot = asyncio.run(late())
    assert snapshot["type"] == "snapshot" and snapshot["status"] == "confirmed"
    assert [e["status"] for e in snapshot["events"]] == HAPPY


def test_twenty_orders_at_once_all_confirm_each_seeing_every_status_in_order(
    client: OrderClient,
) -> None:
    async def run_all() -> list[list[dict[str, Any]]]:
        placed = await asyncio.gather(*(asyncio.to_thread(client.place, ORDER) for _ in range(20)))
        return list(
            await asyncio.gather(*(statuses_of(p["wsUrl"], client.api_key, 60) for p in placed))
        )

    for events in asyncio.run(run_all()):
        assert [e["status"] for e in events] == HAPPY


def handshake_status(url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status a WebSocket handshake to `url` gets (101 when accepted)."""

    async def connect() -> int:
        async with websockets.connect(url, additional_headers=headers):
            return 101

    try:
        return asyncio.run(connect())
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


def test_the_websocket_handshake_is_refused_for_an_unknown_order(
    runtime: LocalRuntime, api_key: str
) -> None:
    async def connect() -> None:
        url = f"{runtime.ws_url()}?orderId=00000000-0000-4000-8000-000000000000&apiKey={api_key}"
        async with websockets.connect(url):
            pass

    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(connect())
    assert refused.value.response.status_code == 404


def test_the_websocket_handshake_without_a_valid_key_is_refused_with_401(
    runtime: LocalRuntime, api_key: str
) -> None:
    assert handshake_status(runtime.ws_url()) == 401
    assert handshake_status(f"{runtime.ws_url()}?apiKey=oe_live_0123abcd_{'e' * 43}") == 401
    assert handshake_status(runtime.ws_url(), {"Authorization": "Bearer nope"}) == 401
    assert handshake_status(f"{runtime.ws_url()}?apiKey={api_key}") == 101
    assert handshake_status(runtime.ws_url(), authorization(api_key)) == 101


def test_another_accounts_order_is_not_found_over_http_and_refused_at_the_handshake(
    runtime: LocalRuntime, client: OrderClient, other_api_key: str
) -> None:
    theirs = OrderClient(runtime.http_url, api_key=other_api_key).place(ORDER)["orderId"]

    with pytest.raises(ApiError) as not_found:
        client.get(theirs)
    assert not_found.value.status == 404
    url = f"{runtime.ws_url()}?orderId={theirs}"
    assert handshake_status(url, authorization(client.api_key)) == 404
    assert handshake_status(url, authorization(other_api_key)) == 101


def test_the_http_api_needs_a_key_but_health_does_not(runtime: LocalRuntime) -> None:
    anonymous = OrderClient(runtime.http_url)
    status, body = anonymous.request("POST", "/api/orders/execute", ORDER)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert anonymous.request("GET", "/health")[0] == 200


def test_a_message_that_always_fails_lands_in_its_dead_letter_queue(
    runtime: LocalRuntime,
) -> None:
    sqs = runtime.sqs_client()
    marker = f"poison-{time.time_ns()}"
    sqs.send_message(QueueUrl=runtime.queue_url("RouteQueue"), MessageBody=marker)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        messages = sqs.receive_message(
            QueueUrl=runtime.queue_url("RouteDLQ"),
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            AttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        parked = [m for m in messages if m["Body"] == marker]
        if parked:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the poison message never reached the dead-letter queue")
    for message in parked:
        sqs.delete_message(
            QueueUrl=runtime.queue_url("RouteDLQ"), ReceiptHandle=message["ReceiptHandle"]
        )


def test_a_partial_batch_failure_returns_only_the_failed_message_to_the_queue(
    runtime: LocalRuntime, client: OrderClient
) -> None:
    sqs = runtime.sqs_client()
    marker = f"poison-{time.time_ns()}"
    # Poison first, then good orders: they arrive in the same batches as the poison.
    sqs.send_message(QueueUrl=runtime.queue_url("BuildQueue"), MessageBody=marker)
    placed = [client.place(ORDER) for _ in range(3)]

    for order in placed:
        events = asyncio.run(statuses_of(order["wsUrl"], client.api_key))
        assert events[-1]["status"] == "confirmed"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        dlq = sqs.receive_message(
            QueueUrl=runtime.queue_url("BuildDLQ"), MaxNumberOfMessages=10, VisibilityTimeout=0
        )
        if any(m["Body"] == marker for m in dlq.get("Messages", [])):
            return
        time.sleep(0.5)
    raise AssertionError("the failed message was not redelivered to exhaustion")


def test_posting_to_a_closed_connection_raises_gone_exception(
    runtime: LocalRuntime, api_key: str
) -> None:
    management = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=runtime.management_url(),
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )

    async def open_and_close() -> str:
        async with websockets.connect(f"{runtime.ws_url()}?apiKey={api_key}") as socket:
            await socket.send(json.dumps({"action": "ping"}))
            await socket.recv()
        await asyncio.sleep(0.3)
        return ""

    asyncio.run(open_and_close())
    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId="gone-connection-id=", Data=b"{}")
