"""One queue's SendMessageBatch, shared by every thread of a process.

Threads publish at once: the records of a batch run in parallel (consumers.py), and in
the local runtime every invocation of a worker process shares the publisher. A thread
that finds a send to its queue in flight leaves its messages and waits; the next send
carries up to ten of them, whoever they belong to (group commit). Idle, a message goes
at once; busy, calls per message fall as load rises, and no message waits longer than
the send ahead of it.

One call is in flight per queue and process, so a queue takes at most ten messages per
round trip from one process: hundreds a second here, and in Lambda every container
has a sender of its own. `order-engine bench` at 600 orders/min counted 6.9-7.8
SendMessageBatch calls per order against 8.0 without it (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

SQS_BATCH_LIMIT = 10


class Outgoing(Protocol):
    """An outbox row, as far as publishing cares."""

    @property
    def id(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> Mapping[str, Any]: ...


@dataclass
class _Entry:
    row: Outgoing
    done: bool = False
    sent: bool = False
    error: BaseException | None = None


class BatchSender:
    """Sends to one queue for every thread of the process (one per queue, in Publisher)."""

    def __init__(self, sqs_client: Any, queue_url: str) -> None:
        self._sqs = sqs_client
        self.queue_url = queue_url
        self._changed = threading.Condition()
        self._waiting: list[_Entry] = []
        self._sending = False

    def send(self, rows: Sequence[Outgoing]) -> list[int]:
        """Send `rows`; return the ids SQS accepted. The rest stay unsent (logged), for
        the sweeper: a failed call fails only the rows it carried."""
        mine = [_Entry(row) for row in rows]
        with self._changed:
            self._waiting.extend(mine)
        while True:
            with self._changed:
                self._changed.wait_for(lambda: _settled(mine) or not self._sending)
                if _settled(mine):
                    break
                self._sending = True
                batch = self._take()
            try:
                self._send_batch(batch)
            finally:
                with self._changed:
                    self._sending = False
                    self._changed.notify_all()
        failed = [entry for entry in mine if entry.error is not None]
        if failed:
            log.warning(
                "publishing %d outbox rows to %s failed; they stay unsent",
                len(failed),
                self.queue_url,
                exc_info=failed[0].error,
            )
        return [entry.row.id for entry in mine if entry.sent]

    def _take(self) -> list[_Entry]:
        """The oldest waiting entries, at most ten, with distinct ids (SQS refuses a
        batch whose entries share an id; a row may be published twice at once, by the
        fast path and a sweep)."""
        batch: list[_Entry] = []
        ids: set[int] = set()
        for entry in self._waiting:
            if len(batch) == SQS_BATCH_LIMIT:
                break
            if entry.row.id not in ids:
                ids.add(entry.row.id)
                batch.append(entry)
        taken = {id(entry) for entry in batch}
        self._waiting = [entry for entry in self._waiting if id(entry) not in taken]
        return batch

    def _send_batch(self, batch: list[_Entry]) -> None:
        try:
            response = self._sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(entry.row.id), "MessageBody": json.dumps(entry.row.payload)}
                    for entry in batch
                ],
            )
        except Exception as exc:  # each owner logs it for its own rows
            for entry in batch:
                entry.error, entry.done = exc, True
            return
        except BaseException as exc:  # Ctrl-C, or the process ending: settle, then go
            for entry in batch:
                entry.error, entry.done = exc, True
            raise
        accepted = {entry["Id"] for entry in response.get("Successful", [])}
        for failure in response.get("Failed", []):
            log.warning("SQS refused outbox row %s: %s", failure["Id"], failure)
        for entry in batch:
            entry.sent, entry.done = str(entry.row.id) in accepted, True


def _settled(entries: Sequence[_Entry]) -> bool:
    return all(entry.done for entry in entries)
