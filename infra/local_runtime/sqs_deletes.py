"""Deleting a poller's settled messages ten to a request, a little late.

Lambda deletes a batch's successful messages once the invocation returns. Done per
invocation, that is one DeleteMessageBatch per message whenever batches hold one
message, which they do at any rate below a queue's round trip: `order-engine bench`
counted one delete per message at 200 orders/min, a third of every SQS call the
stack made, each costing the caller and the emulator a few milliseconds of CPU.

Lingering a fraction of a second gathers up to ten into one request. Nobody can tell
the difference: a settled message stays invisible (its visibility timeout is far
longer than the linger), and one that is never deleted because the runtime died in
between comes back after that timeout, which the engine takes as the duplicate it is.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

SQS_BATCH_LIMIT = 10
DEFAULT_LINGER_SECONDS = 0.5


class BatchedDeletes:
    """Deletes messages of one queue in batches of up to ten, each at most `linger` late."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        *,
        name: str,
        linger: float = DEFAULT_LINGER_SECONDS,
    ) -> None:
        self._client = client
        self._queue_url = queue_url
        self._name = name
        self._linger = linger
        self._pending: list[tuple[float, str]] = []  # (when added, receipt handle)
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"deletes-{name}", daemon=True)
        self._thread.start()

    def add(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        now = time.monotonic()
        with self._changed:
            closed = self._closed
            if not closed:
                lingering = bool(self._pending)
                self._pending += [(now, message["ReceiptHandle"]) for message in messages]
                # Lingering over earlier ones, the sender wakes when its linger ends, or
                # now if a request is full; waking it for every message was for nothing.
                if not lingering or len(self._pending) >= SQS_BATCH_LIMIT:
                    self._changed.notify()
        if closed:  # after close() nobody else would send them
            self._send([message["ReceiptHandle"] for message in messages])

    def close(self, timeout: float) -> None:
        """Send what is pending now, and stop."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._pending and not self._closed:
                    self._changed.wait()
                if not self._pending:
                    return  # closed, and nothing left
                due = self._pending[0][0] + self._linger
                while len(self._pending) < SQS_BATCH_LIMIT and not self._closed:
                    left = due - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(left)
                chunk = [handle for _, handle in self._pending[:SQS_BATCH_LIMIT]]
                del self._pending[:SQS_BATCH_LIMIT]
            self._send(chunk)

    def _send(self, handles: list[str]) -> None:
        for start in range(0, len(handles), SQS_BATCH_LIMIT):
            chunk = handles[start : start + SQS_BATCH_LIMIT]
            try:
                response = self._client.delete_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)],
                )
            except Exception as error:
                # The messages come back after their visibility timeout and run again,
                # as duplicates; nothing is lost.
                log.warning("%s: deleting %d messages failed: %s", self._name, len(chunk), error)
                continue
            for failure in response.get("Failed") or []:
                log.warning("%s: delete failed: %s", self._name, failure)
