"""Orders placed and followed over real sockets, against template.yaml on the local runtime."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets

from local_runtime.runtime import LocalRuntime
from order_engine_cli.client import ApiError, OrderClient, authorization
from tests.support.stack import (
    HAPPY,
    ORDER,
    closed_connection_id,
    execute_on_socket,
    follow_posted_order,
    handshake_status,
    management_client,
    place_and_follow_many,
    statuses_of,
    wait_for_dead_letter,
)


def test_a_posted_order_is_followed_through_every_state_with_seq_rising(
    client: OrderClient,
) -> None:
    order_id, events = follow_posted_order(client)

    assert [e["status"] for e in events] == HAPPY
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[-1]["data"]["executedPrice"]
    assert client.get(order_id)["status"] == "confirmed"


def test_an_order_sent_with_execute_on_the_socket_is_followed_the_same_way(
    runtime: LocalRuntime, api_key: str
) -> None:
    order_id, events = execute_on_socket(runtime.ws_url(), api_key)
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
    for events in place_and_follow_many(client, 20):
        assert [e["status"] for e in events] == HAPPY


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
    marker = f"poison-{time.time_ns()}"
    runtime.sqs_client().send_message(QueueUrl=runtime.queue_url("RouteQueue"), MessageBody=marker)

    assert wait_for_dead_letter(runtime, "RouteDLQ", marker)


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
    assert wait_for_dead_letter(runtime, "BuildDLQ", marker)


def test_posting_to_a_closed_connection_raises_gone_exception(
    runtime: LocalRuntime, api_key: str
) -> None:
    management = management_client(runtime)
    connection_id = closed_connection_id(runtime, api_key)

    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId=connection_id, Data=b"{}")
