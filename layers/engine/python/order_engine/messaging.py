"""Queue messages: their envelopes, and the one publisher that puts them on SQS.

Two kinds of message travel, both tiny, because PostgreSQL holds the truth:

- a *step* message, on that step's queue: "do step S for order O";
- a *notify* message, on the notifier's queue: "order O has new events".

Messages are written to the outbox in the transaction that makes them necessary and
published right after commit; the sweeper publishes any left behind (outbox.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from order_engine.errors import PoisonMessage
from order_engine.orders import Step, as_order_id

log = logging.getLogger(__name__)

NOTIFY_TOPIC = "notify"
WATCH_TOPIC = "watch"
ENVELOPE_VERSION = 1
SQS_BATCH_LIMIT = 10


@dataclass(frozen=True)
class StepMessage:
    order_id: UUID
    step: Step
    # Set by the price watch on the route message of a limit order whose price came:
    # the quote that fired it, recorded in the order's watching -> routing event.
    trigger: Mapping[str, Any] | None = None

    def to_payload(self) -> dict[str, Any]:
        payload = {"v": ENVELOPE_VERSION, "orderId": str(self.order_id), "step": self.step.value}
        if self.trigger is not None:
            payload["trigger"] = dict(self.trigger)
        return payload


@dataclass(frozen=True)
class NotifyMessage:
    order_id: UUID
    # Set when a connection asked for the order during $connect: the notifier
    # subscribes it first (see service.OrderService.connect).
    subscribe_connection_id: str | None = None

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"v": ENVELOPE_VERSION, "orderId": str(self.order_id)}
        if self.subscribe_connection_id is not None:
            payload["subscribe"] = self.subscribe_connection_id
        return payload


def decode_step_message(body: str) -> StepMessage:
    data = _decode(body)
    step = data.get("step")
    if not isinstance(step, str) or step not in Step.__members__.values():
        raise PoisonMessage(f"unknown step {step!r}")
    trigger = data.get("trigger")
    if trigger is not None and not isinstance(trigger, dict):
        raise PoisonMessage("message has an invalid trigger")
    return StepMessage(order_id=_order_id(data), step=Step(step), trigger=trigger)


def decode_notify_message(body: str) -> NotifyMessage:
    data = _decode(body)
    connection_id = data.get("subscribe")
    if connection_id is not None and (
        not isinstance(connection_id, str) or not 0 < len(connection_id) <= 128
    ):
        raise PoisonMessage("message has an invalid connection id")
    return NotifyMessage(order_id=_order_id(data), subscribe_connection_id=connection_id)


def _decode(body: str) -> dict[str, Any]:
    if "\x00" in body:
        raise PoisonMessage("message body contains a NUL character")
    try:
        data = json.loads(body)
    except ValueError:
        raise PoisonMessage("message body is not JSON") from None
    if not isinstance(data, dict) or data.get("v") != ENVELOPE_VERSION:
        raise PoisonMessage(f"message is not a version-{ENVELOPE_VERSION} envelope")
    return data


def _order_id(data: Mapping[str, Any]) -> UUID:
    order_id = as_order_id(data.get("orderId"))
    if order_id is None:  # no order can ever have it: the message can never succeed
        raise PoisonMessage("message has no valid orderId")
    return order_id


class Outgoing(Protocol):
    """An outbox row, as far as publishing cares."""

    @property
    def id(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> Mapping[str, Any]: ...


class Publisher:
    """Sends messages to the queue of their topic, ten to a request.

    One instance per process: its boto3 client (and its connection pool) is reused
    by every invocation of a Lambda container. `sqs_client` gives that client, built
    on the first send: a function that never sends ($connect, $disconnect) never pays
    for building one, about 45 ms of CPU in its cold start.
    """

    def __init__(self, sqs_client: Callable[[], Any], queue_urls: Mapping[str, str]) -> None:
        self._client = sqs_client
        self._queue_urls = dict(queue_urls)

    @property
    def _sqs(self) -> Any:
        return self._client()

    def queue_url(self, topic: str) -> str:
        try:
            return self._queue_urls[topic]
        except KeyError:
            raise LookupError(f"no queue is configured for {topic!r}") from None

    def check(self) -> None:
        """Raise unless SQS answers for every configured queue.

        GetQueueUrl, not GetQueueAttributes: it proves the same (SQS is reachable, the
        queue exists) and is cheap everywhere, while moto answers GetQueueAttributes by
        scanning the whole queue for its counts (300 ms with 2,000 messages waiting), so
        a health check under a backlog took seconds."""
        if not self._queue_urls:
            raise LookupError("no queues are configured")
        for url in self._queue_urls.values():
            self._sqs.get_queue_url(QueueName=url.rstrip("/").rsplit("/", 1)[-1])

    def send(self, topic: str, payload: Mapping[str, Any], *, delay_seconds: int = 0) -> None:
        """Send one message now (no outbox): for hints whose loss costs nothing durable."""
        self._sqs.send_message(
            QueueUrl=self.queue_url(topic),
            MessageBody=json.dumps(payload),
            DelaySeconds=delay_seconds,
        )

    def publish(self, rows: Sequence[Outgoing]) -> list[int]:
        """Send outbox rows; return the ids SQS accepted (the rest stay for the sweeper).

        Each topic is sent on its own: a queue that fails (deleted, misconfigured,
        refusing) keeps its own rows back, never the other topics' rows. Otherwise an
        unreachable notify queue would hold back every step message published with a
        notification, and with it every order.
        """
        sent: list[int] = []
        by_topic: dict[str, list[Outgoing]] = {}
        for row in rows:
            by_topic.setdefault(row.topic, []).append(row)
        for topic, topic_rows in by_topic.items():
            try:
                sent += self._publish_topic(topic, topic_rows)
            except Exception:
                log.warning(
                    "publishing %d outbox rows to %r failed; they stay unsent",
                    len(topic_rows),
                    topic,
                    exc_info=True,
                )
        return sent

    def _publish_topic(self, topic: str, rows: Sequence[Outgoing]) -> list[int]:
        url = self.queue_url(topic)
        sent: list[int] = []
        for start in range(0, len(rows), SQS_BATCH_LIMIT):
            chunk = rows[start : start + SQS_BATCH_LIMIT]
            response = self._sqs.send_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(row.id), "MessageBody": json.dumps(row.payload)} for row in chunk
                ],
            )
            sent.extend(int(entry["Id"]) for entry in response.get("Successful", []))
            for failure in response.get("Failed", []):
                log.warning("SQS refused outbox row %s: %s", failure["Id"], failure)
        return sent
