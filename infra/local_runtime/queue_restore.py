"""Recreating the template's queues when SQS has lost them.

An emulator that restarts (or an operator who deletes a queue) leaves the runtime
polling queues that no longer exist; without this, nothing would move again until the
runtime itself restarts. When a poller is told a queue does not exist, every queue of
the template is created again, with its attributes, dead-letter queues first (the
order they were first created in), so each RedrivePolicy finds its target. What the
lost queues held is gone; what the callers keep elsewhere (an outbox) can be sent again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from local_runtime.specs import QueueSpec
from local_runtime.sqs_backends import create_or_update_queue

log = logging.getLogger(__name__)

# The query protocol's code, and the JSON protocol's (newer boto3 with newer servers).
MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def is_missing_queue(error: BaseException) -> bool:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    return (response.get("Error") or {}).get("Code") in MISSING_QUEUE_CODES


class QueueRestorer:
    """Shared by the pollers: one restore answers all of them, at most every few seconds."""

    def __init__(
        self,
        queues: Iterable[QueueSpec],
        client_factory: Callable[[], Any],
        *,
        min_interval: float = 2.0,
    ) -> None:
        self.queues = list(queues)  # creation order: dead-letter queues first
        self._client_factory = client_factory
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._last = -float("inf")
        self.restores = 0

    def restore(self) -> None:
        with self._lock:
            if time.monotonic() - self._last < self._min_interval:
                return  # another poller just did it
            self._last = time.monotonic()
            client = self._client_factory()
            names = []
            for queue in self.queues:
                try:
                    create_or_update_queue(client, queue.name, dict(queue.attributes))
                    names.append(queue.name)
                except Exception as error:
                    log.warning("could not recreate queue %s: %s", queue.name, error)
            self.restores += 1
            log.warning("SQS had lost the template's queues; recreated %s", ", ".join(names))
