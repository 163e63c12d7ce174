"""Handler-level fixtures: the real functions/ handlers, real PostgreSQL, SQS on a moto
server, and a recording management API, wired through the same environment variables
template.yaml sets on AWS.

`Stack.deliver` plays Lambda's event source mapping for one receive: real messages
(real ids and receipt handles) become an SQS event, the handler runs, and only the
records not listed in `batchItemFailures` are deleted. `Stack.api_key` is an API key of
the session's own account; `Stack.auth` the header that presents it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from order_engine.accounts import IssuedKey
from order_engine.orders import TERMINAL, Status, Step
from order_engine.records import Order
from order_engine.wiring import Engine, engine, reset_engine
from tests.support.aws import FAKE_CREDENTIALS, ManagementApi, create_queues, moto_server
from tests.support.env import engine_environment
from tests.support.functions import load_function_module

FUNCTIONS = Path(__file__).resolve().parents[3] / "functions"
TOPICS = [step.value for step in Step] + ["notify"]


def load_function(name: str) -> ModuleType:
    """Import functions/<name>.py as Lambda would (its own module, by file)."""
    return load_function_module(name, f"functions_{name}")


@dataclass
class Stack:
    sqs: Any
    queue_urls: dict[str, str]
    management: ManagementApi
    api: ModuleType
    websocket: ModuleType
    workers: ModuleType
    notifier: ModuleType
    sweeper: ModuleType
    issued_key: IssuedKey

    @property
    def engine(self) -> Engine:
        return engine()

    @property
    def api_key(self) -> str:
        return self.issued_key.key

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.api_key)

    def handler_for(self, topic: str) -> Callable[[dict[str, Any], Any], Any]:
        if topic == "notify":
            return self.notifier.notify  # type: ignore[no-any-return]
        return getattr(self.workers, topic)  # type: ignore[no-any-return]

    def receive(self, topic: str, *, wait: int = 0) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_urls[topic],
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def deliver(self, topic: str, messages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """One event source mapping cycle on `topic`'s queue; returns the handler's answer."""
        messages = self.receive(topic) if messages is None else messages
        if not messages:
            return {"batchItemFailures": []}
        queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{topic}"
        event = {"Records": [lambda_record(m, queue_arn) for m in messages]}
        answer = self.handler_for(topic)(event, None) or {}
        failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for message in done:
            self.sqs.delete_message(
                QueueUrl=self.queue_urls[topic], ReceiptHandle=message["ReceiptHandle"]
            )
        return dict(answer)

    def run(self, order_id: str, *, timeout: float = 20.0) -> Order:
        """Deliver every queue until the order is terminal and nothing is left to do."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for topic in TOPICS:
                self.deliver(topic)
            order = self.engine.store.get_order(order_id)
            assert order is not None
            if order.status in TERMINAL and not self.pending():
                return order
            time.sleep(0.05)
        raise AssertionError(f"order {order_id} did not finish: {order.status}")

    def pending(self) -> int:
        total = 0
        for topic in TOPICS:
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_urls[topic],
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            total += sum(int(count) for count in attributes.values())
        return total

    def use_new_queues(self) -> None:
        """Point the handlers at brand-new queues (SQS allows one purge a minute)."""
        prefix = f"t{uuid.uuid4().hex[:8]}"
        urls = create_queues(self.sqs, [f"{prefix}-{topic}" for topic in TOPICS])
        self.queue_urls = {topic: urls[f"{prefix}-{topic}"] for topic in TOPICS}
        os.environ.update(queue_environment(self.queue_urls))
        reset_engine()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def queue_environment(urls: dict[str, str]) -> dict[str, str]:
    return {
        **{f"{step.name}_QUEUE_URL": urls[step.value] for step in Step},
        "NOTIFY_QUEUE_URL": urls["notify"],
    }


def lambda_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """An SQS message as Lambda's event source mapping hands it to a function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


@pytest.fixture(scope="session")
def stack(migrated_url: str) -> Iterator[Stack]:
    with moto_server() as sqs_endpoint:
        sqs = boto3.client(
            "sqs",
            endpoint_url=sqs_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        # Every moto server in this process shares one backend, so queue names must be
        # unique to this fixture (another suite may create "route" with other settings).
        prefix = f"handlers{uuid.uuid4().hex[:8]}"
        urls = create_queues(sqs, [f"{prefix}-{topic}" for topic in TOPICS])
        urls = {topic: urls[f"{prefix}-{topic}"] for topic in TOPICS}
        management = ManagementApi()
        management.start()
        env = {
            **FAKE_CREDENTIALS,
            "DATABASE_URL": migrated_url,
            "AWS_ENDPOINT_URL_SQS": sqs_endpoint,
            **queue_environment(urls),
            "WEBSOCKET_URL": "ws://127.0.0.1:3001/v1",
            "WEBSOCKET_MANAGEMENT_URL": management.url,
            "DEX_LATENCY_SCALE": "0",
            "DEX_SEED": "11",
            "ORDER_RETRY_BASE_SECONDS": "1",
        }
        with engine_environment(env):
            try:
                issued = engine().accounts.create_key(f"handler-tests-{uuid.uuid4().hex[:8]}")
                yield Stack(
                    issued_key=issued,
                    sqs=sqs,
                    queue_urls=urls,
                    management=management,
                    api=load_function("api"),
                    websocket=load_function("websocket"),
                    workers=load_function("workers"),
                    notifier=load_function("notifier"),
                    sweeper=load_function("sweeper"),
                )
            finally:
                management.stop()


@pytest.fixture
def fresh(stack: Stack) -> Stack:
    """The stack on empty queues, with a new engine (default, fault-free venues)."""
    stack.use_new_queues()
    return stack


# A wide tolerance: these tests are about the pipeline, not about the ~3 % of swaps
# that the simulation fails on execution slippage at the default 100 bps.
ORDER = {
    "type": "market",
    "tokenIn": "SOL",
    "tokenOut": "USDC",
    "amount": "1.25",
    "slippageBps": 500,
}
HAPPY = [Status.PENDING, Status.ROUTING, Status.BUILDING, Status.SUBMITTED, Status.CONFIRMED]
