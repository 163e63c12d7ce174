"""WebSocket clients that leave mid-stream: their connection is dropped (410 from the
management API, or $disconnect), the other subscribers get every event in order, and
the order completes.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import Any

import psycopg
import websockets

from order_engine.orders import Step
from order_engine_cli.client import TERMINAL, StatusStream, authorization
from tests.faults.harness import FaultStack
from tests.faults.servers import UpProcess
from tests.support.events import (
    new_connection_id,
    ws_connect_event,
    ws_disconnect_event,
    ws_message_event,
)
from tests.support.handler_stack import ORDER


def connections(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT connection_id FROM connections")}


def test_subscribers_leaving_mid_stream_are_dropped_and_the_others_get_every_event(
    stack: FaultStack, fault_seed: int
) -> None:
    """Three subscribers: one stays, one's connection is gone (the management API
    answers 410), one says $disconnect; each leaves after a step the seed picks."""
    order_id = stack.place()
    stays, gone, leaves = (new_connection_id() for _ in range(3))
    for connection in (stays, gone, leaves):
        stack.websocket.connect(ws_connect_event(connection, headers=stack.auth), None)
        subscribe = {"action": "subscribe", "orderId": order_id}
        stack.websocket.message(ws_message_event(connection, subscribe), None)
    rng = random.Random(fault_seed)
    # Before the last step, so that a later notification finds the gone connection.
    leave_after = {gone: rng.choice(list(Step)[:-1]), leaves: rng.choice(list(Step)[:-1])}

    for step in Step:
        assert stack.deliver(step.value)["batchItemFailures"] == []
        for _ in range(2):  # a notification may follow its own step's by one delivery
            assert stack.deliver("notify")["batchItemFailures"] == []  # 410 is no failure
        if leave_after[gone] is step:
            stack.management.gone.add(gone)
        if leave_after[leaves] is step:
            stack.websocket.disconnect(ws_disconnect_event(leaves), None)

    received = {c: stack.management.messages(c) for c in (stays, gone, leaves)}
    report = stack.check(notifications=received)
    assert report.statuses["confirmed"] + report.statuses["failed"] == 1
    final = stack.engine.store.get_events(order_id)[-1].seq
    last_seen = max(
        [m["seq"] for m in received[stays] if m["type"] == "event"]
        + [e["seq"] for m in received[stays] if m["type"] == "snapshot" for e in m["events"]]
    )
    assert last_seen == final  # the one who stayed saw the order to its end
    assert {c for c, _ in stack.engine.subscriptions.subscribers(order_id)} == {stays}
    assert connections(stack.database_url).isdisjoint({gone, leaves})


def test_a_socket_closed_mid_stream_is_forgotten_and_the_other_follower_sees_the_end(
    up: Callable[..., UpProcess],
) -> None:
    """Real sockets on `order-engine up` (realistic latency, so the order takes a few
    seconds): one follower drops its TCP connection after the snapshot, the other
    follows the order to its end."""
    stack = up()
    stack.start()
    placed = stack.client.place(ORDER)
    ws_url, key = placed["wsUrl"], stack.client.api_key
    assert key is not None

    async def follow(leave_early: bool) -> list[dict[str, Any]]:
        stream, events = StatusStream(), []
        async with websockets.connect(ws_url, additional_headers=authorization(key)) as socket:
            async for raw in socket:
                events += stream.accept(json.loads(raw))
                if leave_early:
                    socket.transport.abort()  # no close frame: the client just vanishes
                    return events
                if events and events[-1]["status"] in TERMINAL:
                    assert not stream.out_of_order
                    return events
        raise AssertionError("the socket closed before the order ended")

    async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        stays, leaves = await asyncio.wait_for(
            asyncio.gather(follow(False), follow(True)), timeout=60
        )
        return stays, leaves

    stays, leaves = asyncio.run(both())

    assert [e["seq"] for e in stays] == list(range(1, len(stays) + 1))
    assert stays[-1]["status"] in TERMINAL and len(leaves) >= 1
    deadline = time.monotonic() + 10
    while connections(stack.database_url):  # both gone: one vanished, one closed
        assert time.monotonic() < deadline, connections(stack.database_url)
        time.sleep(0.2)
    checker = stack.checker()
    assert not checker.settle([placed["orderId"]], timeout=10)
    checker.check([placed["orderId"]], every_order_in_database=True).assert_ok()
