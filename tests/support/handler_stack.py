"""The in-process stack of the integration and fault tests: the real functions/
handlers, real PostgreSQL, SQS on a moto server, and a recording management API, wired
through the same environment variables template.yaml sets on AWS.

`Stack.deliver` plays Lambda's event source mapping for one receive: real messages
(real ids and receipt handles) become an SQS event, the handler runs, and only the
records not listed in `batchItemFailures` are deleted. `Stack.api_key` is an API key of
the stack's own account; `Stack.auth` the header that presents it.

`handler_stack` builds one; tests/integration/handlers and tests/faults each keep one
for their session, with their own database, queue settings and environment.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import boto3
import psycopg
from chalice.test import Client

from order_engine.accounts import IssuedKey
from order_engine.orders import TERMINAL, Step
from order_engine.records import Order
from order_engine.wiring import Engine, engine, reset_engine
from tests.support.aws import FAKE_CREDENTIALS, ManagementApi, create_queues, moto_server
from tests.support.env import engine_environment
from tests.support.functions import load_function_module

TOPICS = [step.value for step in Step] + ["notify"]
# A wide tolerance: these tests are about the pipeline, not about the ~3 % of swaps
# that the simulation fails on execution slippage at the default 100 bps.
ORDER = {
    "type": "market",
    "tokenIn": "SOL",
    "tokenOut": "USDC",
    "amount": "1.25",
    "slippageBps": 500,
}


def load_function(name: str) -> ModuleType:
    """Import functions/<name>.py as Lambda would (its own module, by file)."""
    return load_function_module(name, f"functions_{name}")


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


@dataclass(frozen=True)
class Queues:
    """One queue (and its DLQ) per topic, named `<prefix>-<topic>` as a SAM stack names
    them, so `order-engine dlq --stack-name <prefix>` finds them."""

    prefix: str
    urls: dict[str, str]
    dlq_urls: dict[str, str]  # by "<topic>-dlq"
    max_receive_count: int
    visibility_timeout: int

    @classmethod
    def create(cls, sqs: Any, *, max_receive_count: int, visibility_timeout: int) -> Queues:
        # Every moto server of a process shares one backend: names of their own.
        prefix = f"t{uuid.uuid4().hex[:8]}"
        urls = create_queues(
            sqs,
            [f"{prefix}-{topic}" for topic in TOPICS],
            max_receive_count=max_receive_count,
            visibility_timeout=visibility_timeout,
        )
        return cls(
            prefix,
            {topic: urls[f"{prefix}-{topic}"] for topic in TOPICS},
            {f"{topic}-dlq": urls[f"{prefix}-{topic}-dlq"] for topic in TOPICS},
            max_receive_count,
            visibility_timeout,
        )

    def renewed(self, sqs: Any) -> Queues:
        """Brand-new queues with the same settings."""
        return Queues.create(
            sqs,
            max_receive_count=self.max_receive_count,
            visibility_timeout=self.visibility_timeout,
        )


@dataclass
class Stack:
    sqs: Any
    management: ManagementApi
    issued_key: IssuedKey
    database_url: str
    queues: Queues
    api: ModuleType
    websocket: ModuleType
    workers: ModuleType
    notifier: ModuleType
    sweeper: ModuleType

    @property
    def engine(self) -> Engine:
        return engine()

    @property
    def api_key(self) -> str:
        return self.issued_key.key

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.api_key)

    def swaps(self, order_id: object) -> int:
        """How many swaps the simulated chain recorded for `order_id` (at most one)."""
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM dex_submissions WHERE order_id = %s", (order_id,)
            ).fetchone()
        assert row is not None
        return int(row[0])

    def open_connection(self, connection_id: str) -> str:
        """Record a WebSocket connection as $connect does, under this stack's key, so
        it may subscribe to the stack's orders."""
        caller = self.engine.accounts.authenticate(self.issued_key.key)
        self.engine.subscriptions.add_connection(connection_id, caller=caller)
        return connection_id

    @property
    def prefix(self) -> str:
        return self.queues.prefix

    @property
    def queue_urls(self) -> dict[str, str]:
        return self.queues.urls

    @property
    def dlq_urls(self) -> dict[str, str]:
        return self.queues.dlq_urls

    def use_new_queues(self) -> None:
        """Point the handlers at brand-new queues (SQS allows one purge a minute)."""
        self.queues = self.queues.renewed(self.sqs)
        os.environ.update(queue_environment(self.queue_urls))
        reset_engine()

    # --- placing orders -----------------------------------------------------------

    def post(
        self, order: dict[str, Any] | None = None, *, key: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POST an order to the HTTP handler, with a fresh idempotency key, as the
        stack's own account or `key`'s."""
        with Client(self.api.app) as client:
            response = client.http.post(
                "/api/orders/execute",
                headers={
                    "Content-Type": "application/json",
                    "Idempotency-Key": str(uuid.uuid4()),
                    **(self.auth if key is None else bearer(key)),
                },
                body=json.dumps(order or ORDER),
            )
        return response.status_code, json.loads(response.body or b"{}")

    def place(self, order: dict[str, Any] | None = None) -> str:
        """POST an order; it must be accepted (202). Its id."""
        status, body = self.post(order)
        assert status == 202, (status, body)
        return str(body["orderId"])

    def place_as(self, key: str, order: dict[str, Any] | None = None) -> str:
        """Place an order for `key`'s account; its id."""
        status, body = self.post(order, key=key)
        assert status == 202, (status, body)
        return str(body["orderId"])

    def cancel(self, order_id: str, *, key: str | None = None) -> tuple[int, dict[str, Any]]:
        """DELETE the order through the HTTP handler, as the stack's own account or
        `key`'s: the answer's status and body."""
        with Client(self.api.app) as client:
            response = client.http.delete(
                f"/api/orders/{order_id}", headers=self.auth if key is None else bearer(key)
            )
        return response.status_code, json.loads(response.body or b"{}")

    # --- delivering messages ------------------------------------------------------

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


S = TypeVar("S", bound=Stack)


# The engine's timing knobs a stack may tune. Stacks live for the whole session, one
# inside another (the fault suite's, then the handler tests'), so a stack that leaves
# one of these out gets the engine's default, never the tuning of the stack before it
# (the fault suite's outbox grace of "never" kept the handler tests' sweeper idle).
TUNING = (
    "ORDER_RETRY_BASE_SECONDS",
    "ORDER_STUCK_AFTER_SECONDS",
    "OUTBOX_GRACE_SECONDS",
    "RATE_LIMIT_PER_MINUTE",
    "DB_POOL_MAX",
)


@contextmanager
def handler_stack(
    kind: type[S],
    database_url: str,
    *,
    name: str,
    env: Mapping[str, str],
    also_restore: Iterable[str] = (),
    max_receive_count: int = 5,
    visibility_timeout: int = 30,
) -> Iterator[S]:
    """A stack of `kind` on `database_url`, on queues of its own, with an account of its
    own (named after `name`). `env` adds to (or overrides) the handlers' environment."""
    with moto_server() as sqs_endpoint:
        sqs = boto3.client(
            "sqs",
            endpoint_url=sqs_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        queues = Queues.create(
            sqs, max_receive_count=max_receive_count, visibility_timeout=visibility_timeout
        )
        management = ManagementApi()
        management.start()
        handlers_env = {
            **FAKE_CREDENTIALS,
            "DATABASE_URL": database_url,
            "AWS_ENDPOINT_URL_SQS": sqs_endpoint,
            **queue_environment(queues.urls),
            "WEBSOCKET_URL": "ws://127.0.0.1:3001/v1",
            "WEBSOCKET_MANAGEMENT_URL": management.url,
            "DEX_LATENCY_SCALE": "0",
            **env,
        }
        with engine_environment(handlers_env, also_restore=also_restore, unset=TUNING):
            try:
                issued = engine().accounts.create_key(f"{name}-{uuid.uuid4().hex[:8]}")
                yield kind(
                    sqs=sqs,
                    management=management,
                    issued_key=issued,
                    database_url=database_url,
                    queues=queues,
                    api=load_function("api"),
                    websocket=load_function("websocket"),
                    workers=load_function("workers"),
                    notifier=load_function("notifier"),
                    sweeper=load_function("sweeper"),
                )
            finally:
                management.stop()
