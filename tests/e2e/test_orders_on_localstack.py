"""The end-to-end checks of test_orders_over_sockets.py with SQS on LocalStack instead of
moto: template.yaml on the local runtime, in this process, SQS served by LocalStack run
on the host (its own venv under .data/localstack-venv, built with a Python >= 3.12 on
first use), driven over real HTTP and WebSocket sockets with the same helpers.

One LocalStack for the module (so for the session): the stack starts once, and each
test uses its own marker or orders. While it runs, its environment is the process's
(the handlers' engine is built from it); the session's moto stack gets its own back at
the end of the module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from local_runtime.localstack_host import find_python312
from local_runtime.runtime import LocalRuntime
from order_engine.wiring import reset_engine
from order_engine_cli.client import OrderClient
from tests.support.stack import (
    HAPPY,
    ROOT,
    closed_connection_id,
    execute_on_socket,
    follow_posted_order,
    management_client,
    max_receive_count,
    place_and_follow_many,
    stack_options,
    wait_for_dead_letter,
)

pytestmark = [
    pytest.mark.localstack,
    pytest.mark.skipif(find_python312() is None, reason="LocalStack needs a Python >= 3.12"),
    pytest.mark.timeout(900),  # the first run builds LocalStack's venv
]


def forget_the_engine(runtime: LocalRuntime) -> None:
    """The handlers build their engine from the environment on first use. Forgotten once
    this stack's environment is applied: an engine built before (by the session's moto
    stack, whose sweeper keeps firing meanwhile) would post to that stack's queues and
    connections."""
    reset_engine()


@pytest.fixture(scope="module")
def stack(migrated_url: str) -> Iterator[LocalRuntime]:
    # data_dir is the project's .data: the LocalStack venv is built there once, and kept.
    options = stack_options(
        migrated_url, ROOT / ".data", sqs="localstack", on_start=[forget_the_engine]
    )
    try:
        with LocalRuntime(ROOT / "template.yaml", options) as started:
            assert started.sqs is not None and "LocalStack" in started.sqs.description
            yield started
    finally:
        reset_engine()  # back to the moto stack's environment, restored by stop()


@pytest.fixture
def client(stack: LocalRuntime, api_key: str) -> OrderClient:
    return OrderClient(stack.http_url, api_key=api_key)


def test_a_posted_order_is_followed_through_every_state_with_seq_rising(
    client: OrderClient,
) -> None:
    order_id, events = follow_posted_order(client, timeout=60)

    assert [e["status"] for e in events] == HAPPY
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[-1]["data"]["executedPrice"]
    assert client.get(order_id)["status"] == "confirmed"


def test_an_order_sent_with_execute_on_the_socket_is_followed_the_same_way(
    stack: LocalRuntime, api_key: str
) -> None:
    order_id, events = execute_on_socket(stack.ws_url(), api_key, timeout=60)

    assert order_id and [e["status"] for e in events] == HAPPY
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert {e["orderId"] for e in events} == {order_id}


def test_twenty_orders_at_once_all_confirm_each_seeing_every_status_in_order(
    client: OrderClient,
) -> None:
    followed = place_and_follow_many(client, 20, timeout=120)

    assert len(followed) == 20
    for events in followed:
        assert [e["status"] for e in events] == HAPPY


def test_a_message_that_always_fails_lands_in_its_dead_letter_queue_after_max_receives(
    stack: LocalRuntime,
) -> None:
    assert max_receive_count(stack, "RouteQueue") == 5
    marker = f"poison-{time.time_ns()}"
    stack.sqs_client().send_message(QueueUrl=stack.queue_url("RouteQueue"), MessageBody=marker)

    (parked,) = wait_for_dead_letter(stack, "RouteDLQ", marker, timeout=120)
    # LocalStack, like SQS, carries the receive count over: it was received (and failed)
    # maxReceiveCount times before it moved, and once more here.
    assert int(parked["Attributes"]["ApproximateReceiveCount"]) > 5


def test_posting_to_a_closed_connection_raises_gone_exception(
    stack: LocalRuntime, api_key: str
) -> None:
    management = management_client(stack)
    connection_id = closed_connection_id(stack, api_key)

    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId=connection_id, Data=b"{}")
