"""How many receive loops an SQS event source mapping runs, and when they rest.

Lambda long-polls a queue until it becomes active, then reads it with five pollers at
a time; with `MaximumConcurrency` set it keeps five while traffic is low (AWS, "Configuring
scaling behavior for SQS event source mappings"; its further scaling under a backlog is
left out here). The runtime does the same with a mapping's receive loops: the first one
always polls, the others poll while the queue is active. One whose long poll comes back
empty rests until another receives a message: every waiting long poll holds a request
open in the SQS server, for nothing while the queue is quiet.

The loops other than the first also poll only with a sandbox of the function to spare
each, idle or quick to start (event_source_mapping.py says why).
"""

from __future__ import annotations

import threading

from local_runtime.specs import SqsEventSpec

RECEIVE_LOOPS = 5


def receive_loops(mapping: SqsEventSpec) -> int:
    """How many loops receive for a mapping: five, never more than MaximumConcurrency.

    One when the mapping has a batching window: it waits for messages on purpose, and
    loops side by side would split between their batches what one window should gather.
    """
    if mapping.batching_window > 0:
        return 1
    return max(1, min(RECEIVE_LOOPS, mapping.maximum_concurrency))


class ReceiveLoops:
    """The receive loops of one mapping: the resting of all but the first while the
    queue is quiet."""

    def __init__(self, mapping: SqsEventSpec, stopping: threading.Event) -> None:
        self.count = receive_loops(mapping)
        self._stopping = stopping
        self._changed = threading.Condition()
        self._wakes = 0

    def received(self) -> None:
        """A loop received messages: the queue is active, wake the resting loops."""
        with self._changed:
            self._wakes += 1
            self._changed.notify_all()

    def rest(self) -> None:
        """A loop found the queue quiet: wait until another receives, or the mapping stops."""
        with self._changed:
            seen = self._wakes
            while self._wakes == seen and not self._stopping.is_set():
                self._changed.wait()

    def stop(self) -> None:
        """Wake the resting loops to see that the mapping is stopping (set by the caller)."""
        with self._changed:
            self._changed.notify_all()
