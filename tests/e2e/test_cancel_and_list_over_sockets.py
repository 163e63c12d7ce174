"""Cancelling and listing orders over real sockets: template.yaml on the local runtime,
driven by HTTP and WebSocket clients as users drive it. The venues are slowed down in
this module (SLOW_VENUES), so an order stays in `pending` and `routing` long enough to
be cancelled."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import websockets

from local_runtime.runtime import LocalRuntime
from order_engine_cli.client import OrderClient
from tests.support.stack import ORDER, SLOW_VENUES, venues_configured


@pytest.fixture(scope="module", autouse=True)
def slow_venues(runtime: LocalRuntime) -> Iterator[None]:
    with venues_configured(runtime, SLOW_VENUES):
        yield


@pytest.fixture
def me(runtime: LocalRuntime, fresh_api_key: str) -> OrderClient:
    return OrderClient(runtime.http_url, api_key=fresh_api_key)


def wait_for(client: OrderClient, order_id: str, statuses: set[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = str(client.get(order_id)["status"])
        if status in statuses:
            return status
        assert time.monotonic() < deadline, f"{order_id} still {status}"
        time.sleep(0.05)


def swaps(database_url: str, order_id: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dex_submissions WHERE order_id = %s", (order_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_cancelling_a_pending_order_ends_it_cancelled_with_no_swap(
    me: OrderClient, migrated_url: str
) -> None:
    order_id = me.place(ORDER)["orderId"]

    status, body = me.request("DELETE", f"/api/orders/{order_id}")

    assert (status, body["status"]) == (200, "cancelled"), body
    time.sleep(6)  # the route step quotes meanwhile, and must change nothing
    order = me.get(order_id)
    assert order["status"] == "cancelled"
    assert [event["status"] for event in order["events"]] == ["pending", "cancelled"]
    assert order["txSignature"] is None and swaps(migrated_url, order_id) == 0


def test_cancelling_a_routing_order_over_the_socket_pushes_cancelled_and_no_swap_happens(
    runtime: LocalRuntime, me: OrderClient, migrated_url: str
) -> None:
    async def cancel_and_watch(order_id: str) -> list[dict[str, Any]]:
        url = f"{runtime.ws_url()}?apiKey={me.api_key}"
        async with websockets.connect(url) as socket:
            await socket.send(json.dumps({"action": "cancel", "orderId": order_id}))
            await socket.send(json.dumps({"action": "subscribe", "orderId": order_id}))
            received: list[dict[str, Any]] = []
            while not any(m["type"] in {"snapshot", "event"} for m in received):
                received.append(json.loads(await asyncio.wait_for(socket.recv(), 10)))
            return received

    # The build step leaves routing within a second: an order may be built before the
    # cancel lands (then refused, which is right too); one of five lands in routing.
    for _ in range(5):
        order_id = me.place(ORDER)["orderId"]
        wait_for(me, order_id, {"routing"}, timeout=15)
        received = asyncio.run(cancel_and_watch(order_id))
        if received[0].get("type") == "cancelled":
            break
        assert received[0]["error"]["code"] == "not_cancellable", received
    else:
        raise AssertionError("no cancel reached an order in routing")

    assert received[0] == {"type": "cancelled", "orderId": order_id, "status": "cancelled"}
    assert received[-1]["status"] == "cancelled"  # the subscriber's view
    time.sleep(3)  # a build step for it may run meanwhile, and must build nothing
    order = me.get(order_id)
    assert order["status"] == "cancelled" and order["txSignature"] is None
    assert [event["status"] for event in order["events"]] == ["pending", "routing", "cancelled"]
    assert swaps(migrated_url, order_id) == 0


def test_cancelling_once_the_transaction_is_built_answers_409_naming_the_status(
    me: OrderClient,
) -> None:
    order_id = me.place(ORDER)["orderId"]
    wait_for(me, order_id, {"building", "submitted", "confirmed", "failed"}, timeout=15)

    status, body = me.request("DELETE", f"/api/orders/{order_id}")

    assert status == 409, body
    now = body["error"]["status"]
    assert now in {"building", "submitted", "confirmed", "failed"}
    assert now in body["error"]["message"]
    assert me.get(order_id)["status"] != "cancelled"


def test_the_list_pages_without_duplicates_or_gaps_while_orders_arrive(
    runtime: LocalRuntime, me: OrderClient, other_api_key: str
) -> None:
    before = [me.place(ORDER)["orderId"] for _ in range(7)]
    theirs = OrderClient(runtime.http_url, api_key=other_api_key)
    stop = threading.Event()
    arrived: list[str] = []

    def keep_placing() -> None:  # mine and another account's, while the pages are read
        while not stop.is_set():
            arrived.append(me.place(ORDER)["orderId"])
            theirs.place(ORDER)
            time.sleep(0.05)

    placer = threading.Thread(target=keep_placing)
    placer.start()
    try:
        seen: list[str] = []
        cursor = ""
        while True:
            status, page = me.request("GET", f"/api/orders?limit=2{cursor}")
            assert status == 200, page
            seen += [order["id"] for order in page["orders"]]
            if page["nextCursor"] is None:
                break
            cursor = f"&cursor={page['nextCursor']}"
            time.sleep(0.1)
    finally:
        stop.set()
        placer.join()

    assert len(seen) == len(set(seen)), "an order was listed twice"
    assert set(seen) <= set(before) | set(arrived), "another account's order was listed"
    # Every order placed before the first page is on some page, newest first.
    assert [order_id for order_id in seen if order_id in before] == before[::-1]
    assert arrived, "no order arrived while paging"


def test_bad_list_parameters_answer_422_naming_them(me: OrderClient) -> None:
    for query, field in (("limit=101", "limit"), ("status=gone", "status"), ("cursor=x", "cursor")):
        status, body = me.request("GET", f"/api/orders?{query}")
        assert (status, body["error"]["field"]) == (422, field), body
