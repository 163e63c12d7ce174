"""How many receive loops an SQS event source mapping runs, and when each of them polls.

Lambda long-polls a queue until it becomes active, then reads it with five pollers at
a time; with `MaximumConcurrency` set it keeps five while traffic is low (AWS, "Configuring
scaling behavior for SQS event source mappings"; its further scaling under a backlog is
left out here). The runtime does the same with a mapping's receive loops: the first one
always polls, the others poll while the queue is active. One whose long poll comes back
empty rests until another receives a message.

Why several: MiniStack, the default SQS, answers a long poll by looking at the queue
every 100 ms, so with one loop a message sent to an idle queue waited 50 ms on average
(up to 100 ms) for the next look, on every hop of a chain of queues. Loops that look at
different moments of those 100 ms take it sooner. Left alone, their moments bunch up:
a loop that receives polls again right after its own look, and MiniStack, when busy,
runs the looks that fell due meanwhile together. So each loop starts a poll at its own
place, `index` fifths of 100 ms into every 100 ms: at first, after a rest, and after a
receive that drained the queue (fewer messages than a full batch). After a full batch
it polls again at once: more may be waiting. SQS servers that answer a long poll as
soon as a message arrives neither gain nor lose by it.

Why resting: every waiting long poll costs MiniStack a look at the queue every 100 ms,
for nothing while the queue is quiet.

The loops other than the first also poll only with a sandbox of the function to spare
each, idle or quick to start (event_source_mapping.py says why).
"""

from __future__ import annotations

import threading
import time

from local_runtime.specs import SqsEventSpec

RECEIVE_LOOPS = 5
SLOWEST_LOOK_SECONDS = 0.1  # MiniStack's, between two looks at a queue in a long poll


def receive_loops(mapping: SqsEventSpec) -> int:
    """How many loops receive for a mapping: five, never more than MaximumConcurrency.

    One when the mapping has a batching window: it waits for messages on purpose, and
    loops side by side would split between their batches what one window should gather.
    """
    if mapping.batching_window > 0:
        return 1
    return max(1, min(RECEIVE_LOOPS, mapping.maximum_concurrency))


class ReceiveLoops:
    """The receive loops of one mapping: where in each 100 ms each one polls, and the
    resting of all but the first while the queue is quiet."""

    def __init__(self, mapping: SqsEventSpec, stopping: threading.Event) -> None:
        self.count = receive_loops(mapping)
        self._stopping = stopping
        self._epoch = time.monotonic()
        self._changed = threading.Condition()
        self._wakes = 0

    def wait_for_place(self, index: int) -> None:
        """Wait until loop `index`'s own moment in the next 100 ms comes."""
        if self.count == 1:
            return
        place = index * SLOWEST_LOOK_SECONDS / self.count
        since = (time.monotonic() - self._epoch - place) % SLOWEST_LOOK_SECONDS
        self._stopping.wait((SLOWEST_LOOK_SECONDS - since) % SLOWEST_LOOK_SECONDS)

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
