"""SQS event source mappings: what Lambda's pollers do, on threads of each mapping.

Several receive loops per mapping long-poll the queue, as Lambda's pollers do
(poller_scaling.py says how many, and when each polls), and hand each batch to the
function on a thread of the mapping's pool (`_workers`). A loop takes one of
`MaximumConcurrency` slots before it receives, and the batch keeps it until it is
settled, so at most that many invocations of the mapping run at once, however many
loops there are. After the invocation only the messages that succeeded are deleted
(DeleteMessageBatch, gathered across invocations: sqs_deletes.py says why); failed ones
are left alone and reappear when their visibility timeout ends, which is also how SQS
counts receives toward the queue's own redrive to its dead-letter queue.

Loop 0 receives the next batch only once the previous one has a sandbox (`_unstarted`). A
received message is hidden for the queue's visibility timeout and no longer: a batch
that waits in the runtime for a sandbox (all busy, the next one still starting) has
that clock running, and when it runs out SQS hands the message out again, a second copy
and a receive counted toward the dead-letter queue for a message whose function never
failed. Nor is the wait for a sandbox a queue: the newest waiter may win. Left in SQS,
messages wait with their clock stopped, oldest first, and the next receive takes up to
BatchSize of them. The other receive loops poll only with a sandbox of the function
to spare for what they receive (`_claim_a_sandbox`): an idle one, or a cold start the
function's limit and the runtime's budget allow, when its cold starts have taken well
under the visibility timeout. So their batches start at once, or after a short cold
start, and never wait in the runtime for a busy sandbox to come back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from local_runtime.batch_results import BatchVerdict, judge_batch
from local_runtime.functions import InvocationResult, LambdaFunction
from local_runtime.poller_scaling import ReceiveLoops
from local_runtime.queue_restore import QueueRestorer, is_missing_queue
from local_runtime.specs import FunctionSpec, QueueSpec, SqsEventSpec
from local_runtime.sqs_deletes import DEFAULT_LINGER_SECONDS, BatchedDeletes
from local_runtime.sqs_records import sqs_event
from local_runtime.template import TemplateError

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 20  # SQS's ceiling for long polling
DEFAULT_VISIBILITY_SECONDS = 30  # SQS's, for a queue that does not set its own


def check_visibility_timeouts(
    functions: Mapping[str, FunctionSpec], queues: Iterable[QueueSpec]
) -> None:
    """Refuse an SQS event source whose function may run longer than its queue hides a
    message, as Lambda's CreateEventSourceMapping does: the batch would reappear, and
    run a second time, while the first invocation still holds it."""
    by_arn = {queue.arn: queue for queue in queues}
    for function in functions.values():
        for mapping in function.sqs_events:
            queue = by_arn.get(mapping.queue_arn)
            if queue is None:
                continue
            default = DEFAULT_VISIBILITY_SECONDS
            visibility = float(queue.attributes.get("VisibilityTimeout", default))
            if function.timeout > visibility:
                raise TemplateError(
                    f"{function.logical_id}/{mapping.name}: the function's Timeout "
                    f"({function.timeout:g} s) is longer than the VisibilityTimeout "
                    f"({visibility:g} s) of queue {queue.name}; Lambda refuses such an "
                    "event source mapping. Raise the queue's VisibilityTimeout (AWS "
                    "advises 6 times the Timeout) or lower the function's Timeout."
                )


def mapping_name(function: str, mapping: SqsEventSpec, queue: QueueSpec) -> str:
    """How logs and the banner name an event source mapping: Function/Event <- queue."""
    return f"{function}/{mapping.name} <- {queue.name}"


class SqsPoller:
    def __init__(
        self,
        function: LambdaFunction,
        mapping: SqsEventSpec,
        queue: QueueSpec,
        client_factory: Callable[[], Any],
        *,
        region: str,
        wait_seconds: int = MAX_WAIT_SECONDS,
        restorer: QueueRestorer | None = None,
    ) -> None:
        self.function = function
        self._restorer = restorer
        self.mapping = mapping
        self.queue = queue
        self.region = region
        self._client = client_factory()
        # Well inside the visibility timeout: a settled message must not come back.
        visibility = float(queue.attributes.get("VisibilityTimeout", 30))
        self._deletes = BatchedDeletes(
            self._client,
            queue.url,
            name=self.name,
            linger=min(DEFAULT_LINGER_SECONDS, visibility / 4),
        )
        self._wait_seconds = max(0, min(MAX_WAIT_SECONDS, wait_seconds))
        self._slots = threading.BoundedSemaphore(max(1, mapping.maximum_concurrency))
        # Held from a receive until its batch has a sandbox: one batch waits at a time.
        self._unstarted = threading.BoundedSemaphore(1)
        # Sandboxes claimed by the other loops: polling, or received and not started.
        self._claims = 0
        self._cold_start_allowance = visibility / 4
        self._claims_lock = threading.Lock()
        self._stopping = threading.Event()
        # Batches run on threads kept from one batch to the next, at most one per slot:
        # starting a thread per batch took ~110 us of CPU where handing the batch to a
        # waiting thread takes ~25 us (measured on two cores), and Thread.start was 4 %
        # of the runtime's GIL-holding samples at a steady 600 orders/min.
        self._workers = ThreadPoolExecutor(
            max_workers=max(1, mapping.maximum_concurrency),
            thread_name_prefix=f"batch-{function.name}",
        )
        self._running = 0  # batches handed to the workers and not yet settled
        self._none_running = threading.Condition()  # guards _running; notified at 0
        self._receive_loops = ReceiveLoops(mapping, self._stopping)
        self._loops = [
            threading.Thread(
                target=self._loop,
                args=(index,),
                name=f"esm-{function.name}-{mapping.name}-{index}",
                daemon=True,
            )
            for index in range(self._receive_loops.count)
        ]
        self.max_running_seen = 0  # observed concurrency, for tests and diagnostics

    @property
    def name(self) -> str:
        return mapping_name(self.function.name, self.mapping, self.queue)

    def start(self) -> None:
        for loop in self._loops:
            loop.start()

    def stop_polling(self) -> None:
        """No more receives; the receive in flight (if any) releases what it gets."""
        self._stopping.set()
        self._receive_loops.stop()

    def join(self, timeout: float, *, loops_within: float = 0.5) -> None:
        """Wait (bounded) for running batches to be settled and the loops to end, the
        loops for `loops_within` seconds at most."""
        deadline = time.monotonic() + timeout
        with self._none_running:
            self._none_running.wait_for(
                lambda: not self._running, max(0.0, deadline - time.monotonic())
            )
        self._workers.shutdown(wait=False)  # its idle threads end; running batches finish
        self._deletes.close(max(0.5, deadline - time.monotonic()))
        # By default half a second for all the loops together: one inside a long poll
        # ends only with it, or when its SQS is gone (the runtime joins again after
        # that, for longer: a receive cut off by the server's end is tried once more
        # after a backoff of up to 1 s, as botocore's standard retries do).
        loops_deadline = min(deadline, time.monotonic() + loops_within)
        for loop in self._loops:
            loop.join(max(0.0, loops_deadline - time.monotonic()))

    # -- receiving -------------------------------------------------------------------

    def _loop(self, index: int) -> None:
        """Receive and dispatch until stopped. Loop 0 always polls; the others (index > 0)
        rest while the queue is quiet (poller_scaling.py)."""
        loops = self._receive_loops
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue  # every slot busy: MaximumConcurrency reached
            unclaim: Callable[[], None]
            if index == 0:
                if not self._unstarted.acquire(timeout=0.5):
                    self._slots.release()
                    continue  # the last batch still waits for a sandbox
                unclaim = self._unstarted.release
            else:
                if not self._claim_a_sandbox():
                    self._slots.release()
                    loops.rest()  # until loop 0 receives again; sandboxes free by then
                    continue
                unclaim = self._release_claim
            try:
                messages = self._gather()
            except Exception as error:
                unclaim()
                self._slots.release()
                if self._stopping.is_set():
                    continue
                if self._restorer is not None and is_missing_queue(error):
                    self._restorer.restore()
                    continue
                if index:  # loop 0 alone retries, and says so
                    loops.rest()
                    continue
                log.warning("%s: receive failed (%s); retrying in 1 s", self.name, error)
                self._stopping.wait(1.0)
                continue
            if self._stopping.is_set():
                self._release(messages)
                unclaim()
                self._slots.release()
                break
            if not messages:
                unclaim()
                self._slots.release()
                if index:
                    loops.rest()
                continue
            loops.received()
            self._dispatch(messages, unclaim)

    def _claim_a_sandbox(self) -> bool:
        """Whether another loop than loop 0 may poll now: only with a sandbox to spare
        that the other loops have not claimed, and one more left for loop 0's batch. A
        cold start counts as one when it would take under a quarter of the visibility
        timeout: at a steady trickle the step functions keep one or two sandboxes warm,
        and counting only idle ones left the other loops resting (the floor's overhead
        p99 stayed at 198 ms on MiniStack)."""
        with self._claims_lock:
            spare = self.function.sandboxes.ready_within(self._cold_start_allowance)
            if spare < self._claims + 2:
                return False
            self._claims += 1
            return True

    def _release_claim(self) -> None:
        with self._claims_lock:
            self._claims -= 1

    def _gather(self) -> list[dict[str, Any]]:
        """One batch: a single receive, or several within the batching window."""
        wanted = self.mapping.batch_size
        window = self.mapping.batching_window
        messages = self._receive(min(10, wanted), self._wait_seconds)
        if not messages or window <= 0:
            return messages
        deadline = time.monotonic() + window
        while len(messages) < wanted and not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            count = min(10, wanted - len(messages))
            if left >= 1:
                # Returns as soon as anything arrives, or when the window is nearly over.
                messages += self._receive(count, min(int(left), MAX_WAIT_SECONDS))
                continue
            # SQS waits in whole seconds, and a wait of 0 answers at once: asked in a
            # loop, it would be a call per turn for the rest of the window. So take
            # what is there; if that is all, let the window end here, then take what came.
            got = self._receive(count, 0)
            messages += got
            if len(got) < count:
                self._stopping.wait(left)
                messages += self._receive(count - len(got), 0)
                break
        return messages

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        response = self._client.receive_message(
            QueueUrl=self.queue.url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def _release(self, messages: list[dict[str, Any]]) -> None:
        # Received while shutting down: make them visible again at once rather than
        # after a visibility timeout nobody will use.
        for message in messages:
            try:
                self._client.change_message_visibility(
                    QueueUrl=self.queue.url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
            except Exception as error:
                log.debug("%s: could not release a message: %s", self.name, error)

    # -- invoking --------------------------------------------------------------------

    def _dispatch(self, messages: list[dict[str, Any]], on_started: Callable[[], None]) -> None:
        with self._none_running:
            self._running += 1
            self.max_running_seen = max(self.max_running_seen, self._running)
        try:
            self._workers.submit(self._run_batch, messages, on_started)
        except RuntimeError:  # join() shut the pool down: received while stopping
            self._release(messages)
            on_started()
            self._settled()

    def _run_batch(self, messages: list[dict[str, Any]], on_started: Callable[[], None]) -> None:
        waiting = [True]  # for a sandbox; invoke's callback runs on this thread

        def started() -> None:
            if waiting:
                waiting.clear()
                on_started()

        try:
            event = sqs_event(messages, queue_arn=self.queue.arn, region=self.region)
            ids = [m["MessageId"] for m in messages]
            verdicts: list[BatchVerdict] = []

            def describe(result: InvocationResult) -> str:
                verdict = judge_batch(
                    ids,
                    invocation_ok=result.succeeded,
                    value=result.value,
                    report_batch_item_failures=self.mapping.report_batch_item_failures,
                    error=result.outcome,
                )
                verdicts.append(verdict)
                return verdict.describe() if result.succeeded else result.outcome

            self.function.invoke(event, describe, started=started)
            self._deletes.add([m for m in messages if m["MessageId"] in verdicts[0].succeeded])
        except Exception:
            log.exception("%s: batch handling failed", self.name)
        finally:
            started()  # the invocation never got a sandbox: let the next batch come
            self._settled()

    def _settled(self) -> None:
        """A batch is over: its slot is free for the next."""
        with self._none_running:
            self._running -= 1
            if not self._running:
                self._none_running.notify_all()
        self._slots.release()
