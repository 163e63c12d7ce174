"""Dead-letter queues of any SQS (AWS, LocalStack, moto): find them and look inside.
Nothing here knows what the messages mean.

A dead-letter queue is any queue named as some queue's `deadLetterTargetArn`; that
queue is its source. Discovery reads ListQueues and each RedrivePolicy, so it needs no
template and nothing moto lacks. Reading holds messages (a visibility timeout) only
while it runs, and makes them visible again (ChangeMessageVisibility 0) at once.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

HOLD_SECONDS = 30  # how long a message we are working on stays hidden from others
BATCH = 10  # SQS's maximum per receive, send and delete request


@dataclass(frozen=True)
class Queue:
    name: str
    url: str
    arn: str


@dataclass(frozen=True)
class DeadLetterQueue:
    queue: Queue
    sources: tuple[Queue, ...]  # the queues whose RedrivePolicy names it (usually one)

    @property
    def name(self) -> str:
        return self.queue.name

    def names(self) -> set[str]:
        return {self.name, *(source.name for source in self.sources)}

    def destination(self, message: Message) -> Queue | None:
        """Where `message` came from: AWS and LocalStack say so on the message
        (DeadLetterQueueSourceArn); otherwise the DLQ's only source."""
        arn = message.attributes.get("DeadLetterQueueSourceArn")
        for source in self.sources:
            if source.arn == arn:
                return source
        return self.sources[0] if len(self.sources) == 1 else None


@dataclass(frozen=True)
class Message:
    message_id: str
    receipt_handle: str
    body: str
    attributes: Mapping[str, str]
    message_attributes: Mapping[str, Any]

    @classmethod
    def from_sqs(cls, raw: Mapping[str, Any]) -> Message:
        return cls(
            raw["MessageId"],
            raw["ReceiptHandle"],
            raw.get("Body", ""),
            dict(raw.get("Attributes", {})),
            dict(raw.get("MessageAttributes", {})),
        )

    @property
    def receive_count(self) -> int:
        return int(self.attributes.get("ApproximateReceiveCount", 0))

    @property
    def sent_at(self) -> datetime | None:
        """When the message was first sent (SQS keeps this when it dead-letters one)."""
        millis = self.attributes.get("SentTimestamp")
        return datetime.fromtimestamp(int(millis) / 1000, UTC) if millis else None


@dataclass(frozen=True)
class Depth:
    visible: int
    in_flight: int  # received by someone and not yet deleted or made visible again

    @property
    def total(self) -> int:
        return self.visible + self.in_flight


def find_dead_letter_queues(sqs: Any, prefix: str) -> list[DeadLetterQueue]:
    """Every DLQ of the queues whose names start with `prefix`, sorted by name."""
    queues: list[Queue] = []
    policies: dict[str, str] = {}  # source arn -> its DLQ arn
    for page in sqs.get_paginator("list_queues").paginate(QueueNamePrefix=prefix):
        for url in page.get("QueueUrls", []):
            attributes = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["QueueArn", "RedrivePolicy"]
            )["Attributes"]
            queue = Queue(url.rstrip("/").rsplit("/", 1)[-1], url, attributes["QueueArn"])
            queues.append(queue)
            if policy := attributes.get("RedrivePolicy"):
                policies[queue.arn] = json.loads(policy)["deadLetterTargetArn"]
    by_arn = {queue.arn: queue for queue in queues}
    found: dict[str, DeadLetterQueue] = {}
    for source_arn, dlq_arn in policies.items():
        dlq = found.get(dlq_arn)
        queue = dlq.queue if dlq else by_arn.get(dlq_arn) or _queue_by_arn(sqs, dlq_arn)
        found[dlq_arn] = DeadLetterQueue(queue, (*(dlq.sources if dlq else ()), by_arn[source_arn]))
    return sorted(found.values(), key=lambda dlq: dlq.name)


def _queue_by_arn(sqs: Any, arn: str) -> Queue:
    # A DLQ outside the prefix (another naming scheme): its ARN still names it.
    *_, account, name = arn.split(":")
    url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    return Queue(name, url, arn)


def depth(sqs: Any, queue: Queue) -> Depth:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return Depth(
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    )


def oldest_sent(sqs: Any, queue: Queue) -> datetime | None:
    """The earliest SentTimestamp among the messages a peek returns (VisibilityTimeout 0:
    nothing is hidden). ApproximateAgeOfOldestMessage is a CloudWatch metric, not a
    queue attribute, and emulators have no CloudWatch; a peek sees at most ten messages,
    so on a big queue this is an estimate."""
    messages = receive(sqs, queue, BATCH, visibility=0)
    times = [sent for message in messages if (sent := message.sent_at) is not None]
    return min(times) if times else None


def browse(sqs: Any, queue: Queue, limit: int) -> list[Message]:
    """Up to `limit` messages, left in the queue (visible again when this returns)."""
    seen: dict[str, Message] = {}
    try:
        for _ in scan(sqs, queue, seen):
            if len(seen) >= limit:
                break
    finally:
        release_quietly(sqs, queue, seen.values())
    return list(seen.values())[:limit]


def release(sqs: Any, queue: Queue, messages: Iterable[Message]) -> None:
    """Make messages we hold visible again at once, rather than after HOLD_SECONDS."""
    pending = list(messages)
    for start in range(0, len(pending), BATCH):
        chunk = pending[start : start + BATCH]
        sqs.change_message_visibility_batch(
            QueueUrl=queue.url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)
            ],
        )


def release_quietly(sqs: Any, queue: Queue, messages: Iterable[Message]) -> None:
    # Best effort, also while another error propagates: a message we fail to release
    # becomes visible by itself when its hold (HOLD_SECONDS) runs out.
    with contextlib.suppress(Exception):
        release(sqs, queue, messages)


def scan(sqs: Any, queue: Queue, held: dict[str, Message]) -> Iterator[list[Message]]:
    """Batches of messages not seen before, each hidden for HOLD_SECONDS and recorded in
    `held` (by id, with its latest receipt handle), until nothing visible is left."""
    stale_rounds = 0
    while True:
        batch = receive(sqs, queue, BATCH, visibility=HOLD_SECONDS)
        if not batch and depth(sqs, queue).visible:
            # AWS's short polling samples some servers and can answer empty while
            # messages wait; a long poll asks all of them.
            batch = receive(sqs, queue, BATCH, visibility=HOLD_SECONDS, wait=1)
        if not batch:
            return
        fresh = [message for message in batch if message.message_id not in held]
        held.update((message.message_id, message) for message in batch)
        if not fresh:
            # Our hold ran out (a scan longer than HOLD_SECONDS), so messages already
            # seen come back. Give unseen ones a few chances, then stop rather than loop.
            stale_rounds += 1
            if stale_rounds >= 3:
                return
            continue
        stale_rounds = 0
        yield fresh


def receive(sqs: Any, queue: Queue, count: int, *, visibility: int, wait: int = 0) -> list[Message]:
    response = sqs.receive_message(
        QueueUrl=queue.url,
        MaxNumberOfMessages=count,
        VisibilityTimeout=visibility,
        WaitTimeSeconds=wait,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    return [Message.from_sqs(raw) for raw in response.get("Messages", [])]
