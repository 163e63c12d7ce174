"""Moving messages from a dead-letter queue back to their source queue, on any SQS.
Nothing here knows what the messages mean; the caller selects which to move.

Each message goes back as a NEW message (same body and attributes), and is deleted
from the DLQ only after SQS accepted the send. A new message starts with a receive
count of 0: a move that kept the old count (floci #900) would park it again at its
first failed receive, or at once. Messages looked at but not moved (not selected,
failed, dry run) stay hidden while the scan runs, so it never sees one twice, and are
made visible again the moment it ends.

Server-side moves (StartMessageMoveTask) are at the end: faster on AWS, absent on moto.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from order_engine_cli.dlq_queues import (
    BATCH,
    DeadLetterQueue,
    Message,
    Queue,
    release_quietly,
    scan,
)


class Outcome(StrEnum):
    MOVED = "moved"
    WOULD_MOVE = "would move"  # dry run
    SKIPPED = "skipped"  # not selected
    FAILED = "failed"  # the send failed: the message stays in the DLQ


@dataclass
class MoveReport:
    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    problems: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return self.counts[outcome]


OnMessage = Callable[[Message, Outcome], None]


def move_back(
    sqs: Any,
    dlq: DeadLetterQueue,
    *,
    select: Callable[[Message], bool] = lambda message: True,
    limit: int | None = None,
    dry_run: bool = False,
    on_message: OnMessage | None = None,
) -> MoveReport:
    """Send the selected messages of `dlq` back to their source queues as new messages,
    deleting each from the DLQ once its send succeeded; at most `limit` of them."""
    report = MoveReport()
    held: dict[str, Message] = {}  # received and not deleted: released when the scan ends

    def note(message: Message, outcome: Outcome, problem: str | None = None) -> None:
        report.counts[outcome] += 1
        if problem:
            report.problems.append(f"{message.message_id}: {problem}")
        if on_message is not None:
            on_message(message, outcome)

    def room() -> int | None:
        taken = report.count(Outcome.MOVED) + report.count(Outcome.WOULD_MOVE)
        return None if limit is None else limit - taken

    try:
        for batch in scan(sqs, dlq.queue, held):
            chosen: list[Message] = []
            for message in batch:
                left = room()
                if left is not None and left - len(chosen) <= 0:
                    continue  # beyond the limit: stays in the DLQ, released below
                if not select(message):
                    note(message, Outcome.SKIPPED)
                elif dry_run:
                    note(message, Outcome.WOULD_MOVE)
                else:
                    chosen.append(message)
            for message, problem in _send_and_delete(sqs, dlq, chosen):
                if problem is None:
                    del held[message.message_id]
                    note(message, Outcome.MOVED)
                else:
                    note(message, Outcome.FAILED, problem)
            left = room()
            if left is not None and left <= 0:
                break
    finally:
        release_quietly(sqs, dlq.queue, held.values())
    return report


def _send_and_delete(
    sqs: Any, dlq: DeadLetterQueue, messages: list[Message]
) -> list[tuple[Message, str | None]]:
    """(message, None) once sent and deleted; (message, why) when it stays in the DLQ."""
    results: list[tuple[Message, str | None]] = []
    sent: list[Message] = []
    for message in messages:
        destination = dlq.destination(message)
        if destination is None:
            results.append((message, "its source queue is unknown (several sources)"))
            continue
        try:
            sqs.send_message(QueueUrl=destination.url, **_new_message(message, destination))
        except ClientError as error:
            results.append((message, f"{destination.name} refused it: {_describe(error)}"))
            continue
        sent.append(message)
    for message, problem in _delete(sqs, dlq.queue, sent):
        # A message sent but not deleted is back on its source AND still in the DLQ: a
        # later replay sends it again, which the consumer must (and does) treat as a
        # duplicate. Reported, never hidden.
        results.append((message, problem and f"sent, but still in the DLQ: {problem}"))
    return results


def _new_message(message: Message, destination: Queue) -> dict[str, Any]:
    fields: dict[str, Any] = {"MessageBody": message.body}
    if message.message_attributes:
        fields["MessageAttributes"] = message.message_attributes
    if destination.name.endswith(".fifo"):
        fields["MessageGroupId"] = message.attributes.get("MessageGroupId", "replay")
        # The DLQ copy's id: a retried replay of the same copy is deduplicated by SQS.
        fields["MessageDeduplicationId"] = message.message_id
    return fields


def _delete(sqs: Any, queue: Queue, messages: list[Message]) -> list[tuple[Message, str | None]]:
    results: list[tuple[Message, str | None]] = []
    for start in range(0, len(messages), BATCH):
        chunk = messages[start : start + BATCH]
        response = sqs.delete_message_batch(
            QueueUrl=queue.url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(chunk)
            ],
        )
        failed = {int(f["Id"]): f.get("Message") or f["Code"] for f in response.get("Failed", [])}
        results += [(m, failed.get(i)) for i, m in enumerate(chunk)]
    return results


def _describe(error: ClientError) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code', '?')}: {details.get('Message', error)}"


# --- server-side moves (StartMessageMoveTask: AWS and LocalStack, not moto) ------------

_UNSUPPORTED = {"InvalidAction", "UnsupportedOperation", "NotImplemented", "UnknownOperation"}


class MoveTasksUnsupported(Exception):
    """This SQS has no message move tasks (moto)."""


@dataclass(frozen=True)
class MoveTask:
    status: str  # RUNNING | COMPLETED | CANCELLING | CANCELLED | FAILED
    moved: int
    to_move: int | None
    failure: str | None

    @property
    def finished(self) -> bool:
        return self.status in {"COMPLETED", "CANCELLED", "FAILED"}


def start_move_task(sqs: Any, dlq: DeadLetterQueue) -> None:
    """Ask SQS to move everything in `dlq` back to each message's source queue."""
    try:
        sqs.start_message_move_task(SourceArn=dlq.queue.arn)
    except ClientError as error:
        if _unsupported(error):
            raise MoveTasksUnsupported(_describe(error)) from error
        raise


def latest_move_task(sqs: Any, dlq: DeadLetterQueue) -> MoveTask | None:
    results = sqs.list_message_move_tasks(SourceArn=dlq.queue.arn, MaxResults=1)["Results"]
    if not results:
        return None
    task = results[0]
    to_move = task.get("ApproximateNumberOfMessagesToMove")
    return MoveTask(
        task["Status"],
        int(task.get("ApproximateNumberOfMessagesMoved", 0)),
        None if to_move is None else int(to_move),
        task.get("FailureReason"),
    )


def _unsupported(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return status in {500, 501} or any(name in code for name in _UNSUPPORTED)
