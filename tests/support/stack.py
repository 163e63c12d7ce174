"""The end-to-end tests' helpers: template.yaml on the local runtime (SQS on moto or on
LocalStack), driven only over real HTTP and WebSocket sockets, as users drive it.

Shared by tests/e2e/conftest.py and the test modules, so an end-to-end check reads the
same on every SQS it runs on.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import websockets

from local_runtime.options import RuntimeOptions
from local_runtime.runtime import LocalRuntime
from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts
from order_engine.database import Database
from order_engine.orders import HAPPY_PATH
from order_engine_cli.client import OrderClient, StatusStream, follow

ROOT = Path(__file__).resolve().parents[2]
HAPPY = [status.value for status in HAPPY_PATH]
# Wide tolerance: these tests are about delivery, not about simulated slippage.
ORDER = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "2", "slippageBps": 500}
# The SQS backend of the tests' runtimes: moto unless this names another `--sqs` choice,
# to run the same tests against it (docs/local-runtime.md, "SQS backends").
TEST_SQS = os.environ.get("LOCAL_RUNTIME_TEST_SQS", "moto")


def stack_options(database_url: str, data_dir: Path, **overrides: object) -> RuntimeOptions:
    """The options of a test stack: free ports, instant venues, a fast sweeper."""
    options = RuntimeOptions(
        sqs=TEST_SQS,
        http_port=0,
        ws_port=0,
        parameters={"DatabaseUrl": database_url, "DexLatencyScale": "0"},
        correlation_keys=("orderId",),
        schedule_speed=60,
        poll_wait_seconds=1,
        shutdown_timeout=5,
        data_dir=data_dir,
    )
    for key, value in overrides.items():
        setattr(options, key, value)
    return options


# Quotes take 3-5 s (under a 6 s quote timeout, itself under the functions' 10 s) and a
# build 0.2-0.8 s: an order stays pending, then routing, long enough to be cancelled.
SLOW_VENUES = {"DEX_LATENCY_SCALE": "20", "DEX_QUOTE_TIMEOUT": "6"}


@contextmanager
def venues_configured(runtime: LocalRuntime, variables: Mapping[str, str]) -> Iterator[None]:
    """Every function that configures the venues runs with `variables` for the block
    (fresh sandboxes read them), then exactly as before."""
    saved = {
        name: dict(environment)
        for name, environment in runtime.function_environments.items()
        if "DEX_LATENCY_SCALE" in environment
    }
    for name in saved:
        runtime.update_function_environment(name, dict(variables))
    try:
        yield
    finally:
        for name, environment in saved.items():
            runtime.function_environments[name] = environment
            runtime.update_function_environment(name, {})


def new_api_key(database_url: str, name: str) -> str:
    """A new key of a new account named `name`."""
    with Database(database_url, max_size=1) as database:
        return Accounts(AccountStore(database)).create_key(name).key


# --- following orders ---------------------------------------------------------------


async def statuses_of(
    ws_url: str, api_key: str | None, timeout: float = 30
) -> list[dict[str, Any]]:
    """Every event of the order `ws_url` subscribes to, until it is terminal."""

    async def collect() -> list[dict[str, Any]]:
        return [event async for event in follow(ws_url, api_key=api_key)]

    return await asyncio.wait_for(collect(), timeout)


def follow_posted_order(
    client: OrderClient, order: dict[str, Any] | None = None, timeout: float = 30
) -> tuple[str, list[dict[str, Any]]]:
    """POST an order, then follow it over the `wsUrl` the answer gives."""
    placed = client.place(order or ORDER)
    return placed["orderId"], asyncio.run(statuses_of(placed["wsUrl"], client.api_key, timeout))


def execute_on_socket(
    ws_url: str, api_key: str, order: dict[str, Any] | None = None, timeout: float = 30
) -> tuple[str, list[dict[str, Any]]]:
    """Send `{"action": "execute"}` on a socket and follow the order on that socket."""

    async def execute() -> tuple[str, list[dict[str, Any]]]:
        stream, events, order_id = StatusStream(), [], ""
        async with websockets.connect(f"{ws_url}?apiKey={api_key}") as socket:
            await socket.send(json.dumps({"action": "execute", "order": order or ORDER}))
            async for raw in socket:
                message = json.loads(raw)
                if message["type"] == "accepted":
                    order_id = message["orderId"]
                events += stream.accept(message)
                if events and events[-1]["status"] in ("confirmed", "failed"):
                    return order_id, events
        raise AssertionError("socket closed early")

    return asyncio.run(asyncio.wait_for(execute(), timeout))


def place_and_follow_many(
    client: OrderClient, count: int, timeout: float = 60
) -> list[list[dict[str, Any]]]:
    """POST `count` orders at once and follow each on its own socket."""

    async def run_all() -> list[list[dict[str, Any]]]:
        placed = await asyncio.gather(
            *(asyncio.to_thread(client.place, ORDER) for _ in range(count))
        )
        return list(
            await asyncio.gather(
                *(statuses_of(p["wsUrl"], client.api_key, timeout) for p in placed)
            )
        )

    return asyncio.run(run_all())


def handshake_status(url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status a WebSocket handshake to `url` gets (101 when accepted)."""

    async def connect() -> int:
        async with websockets.connect(url, additional_headers=headers):
            return 101

    try:
        return asyncio.run(connect())
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


# --- queues and connections -----------------------------------------------------------


def wait_for_dead_letter(
    runtime: LocalRuntime, dlq: str, body: str, timeout: float = 30
) -> list[dict[str, Any]]:
    """Wait until a message with `body` is in the dead-letter queue `dlq`; delete and
    return what was found (with its ApproximateReceiveCount)."""
    sqs, url = runtime.sqs_client(), runtime.queue_url(dlq)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            AttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        parked = [m for m in messages if m["Body"] == body]
        if parked:
            for message in parked:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            return parked
        time.sleep(0.5)
    raise AssertionError(f"{body!r} never reached {dlq}")


def max_receive_count(runtime: LocalRuntime, queue: str) -> int:
    attributes = runtime.sqs_client().get_queue_attributes(
        QueueUrl=runtime.queue_url(queue), AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    return int(json.loads(attributes["RedrivePolicy"])["maxReceiveCount"])


def management_client(runtime: LocalRuntime) -> Any:
    """boto3's @connections client for the runtime's WebSocket API."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=runtime.management_url(),
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def closed_connection_id(runtime: LocalRuntime, api_key: str, timeout: float = 10) -> str:
    """The id of a connection that was open (it answered a ping) and is closed now."""
    (gateway,) = runtime.websocket_gateways

    async def open_and_close() -> str:
        before = set(gateway.connections)
        async with websockets.connect(f"{runtime.ws_url()}?apiKey={api_key}") as socket:
            await socket.send(json.dumps({"action": "ping"}))
            assert json.loads(await socket.recv()) == {"type": "pong"}
            (connection_id,) = set(gateway.connections) - before
        deadline = time.monotonic() + timeout
        while connection_id in gateway.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return connection_id

    return asyncio.run(open_and_close())
