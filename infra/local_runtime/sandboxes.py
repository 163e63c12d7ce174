"""A function's sandboxes: its own warm processes, started on demand, at most `limit`.

As on Lambda, a sandbox runs one invocation at a time. The pool hands out a warm (idle)
sandbox if there is one. If not, the invocation waits in line; once it has waited
SCALE_UP_AFTER (at once if the function has no sandbox yet) it may have a cold start of
its own, logged with its duration, if the function has fewer than `limit`. Cold starts
run side by side, one per such waiter, as Lambda starts one environment per waiting
invocation, and every sandbox that comes free (a new one, or a warm one that finished
meanwhile) goes to the invocation that has waited longest.

A sandbox that timed out or crashed is killed and never comes back, so the next
invocation gets a fresh one; after a code change (`recycle`) the idle ones stop at once
and the busy ones when their invocation ends.

The parent talks to a sandbox over one multiprocessing pipe: one pickled request and
one JSON reply per invocation, no process or thread started per call. The EMF lines an
invocation printed come on the same pipe in one message with its reply, and go to the
pool's `emf_sink` (the runtime's metrics, emf_metrics.py).

Sandboxes are forked from multiprocessing's fork server, never from the runtime itself
(which runs threads and an event loop, unsafe to fork). The fork server is a clean,
single-threaded process that imports `SANDBOX_PRELOAD` once, so a cold start does not
import boto3 and the like again (and the sandboxes share those pages): on two busy
cores, a dozen sandboxes spawned at once took 15-23 s each to import their handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import pickle
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from local_runtime.function_code import HandlerImportError
from local_runtime.sandbox_process import EMF, READY, SandboxPlan, sandbox_main

log = logging.getLogger("local_runtime.sandboxes")

START_TIMEOUT = 60.0  # fork + imports of a big handler on a busy machine
# How long an invocation waits for a busy sandbox to come back before another starts.
# A new sandbox costs its import and, on its first invocation, its clients and
# connections (0.2-1.7 s each on two busy cores for this project's functions), while a
# warm invocation takes milliseconds; five orders at once took 6-8 s to show their first
# state when every waiting invocation started a sandbox, against 0.3 s in one process.
SCALE_UP_AFTER = 0.2
# When the runtime's budget of sandboxes is spent (SandboxBudget): how long another
# function's sandbox must have been idle before its place is taken, and how often a
# function waiting for a place looks again.
RECLAIM_IDLE_AFTER = 10.0
RECLAIM_CHECK = 1.0
# Libraries Lambda functions commonly import, loaded once in the fork server; those that
# are not installed are skipped. Nothing a function's own code or layers define, nothing
# that starts threads when imported, and nothing that keeps what the environment says
# (botocore_warmup's session reads credentials, region and endpoints only later, in the
# sandbox).
SANDBOX_PRELOAD = (
    "local_runtime.sandbox_process",
    "boto3",
    "botocore.session",
    "botocore.client",
    "chalice",
    "psycopg",
    "psycopg_pool",
    "pydantic",
    "requests",
    "local_runtime.botocore_warmup",  # after boto3: parses its data files once
)
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(list(SANDBOX_PRELOAD))


EmfSink = Callable[[str, list[str]], None]  # (function logical id, EMF lines)


class SandboxCrashed(RuntimeError):
    """The sandbox process ended while it ran an invocation."""


class Sandbox:
    """One process of one function, and the parent's end of its pipe."""

    def __init__(self, plan: SandboxPlan, generation: int, emf_sink: EmfSink | None = None) -> None:
        self.name = plan.spec.logical_id
        self._emf_sink = emf_sink
        self.generation = generation
        self.invocations = 0
        self.idle_since = 0.0  # when it last became idle (time.monotonic)
        started = time.perf_counter()
        self._pipe, theirs = _CONTEXT.Pipe()
        self._process: BaseProcess = _CONTEXT.Process(
            target=sandbox_main,
            args=(plan, theirs),
            name=f"sandbox-{self.name}",
            daemon=True,
        )
        self._process.start()
        theirs.close()
        # Kept for the sandbox's life: Connection.poll builds, fills and closes a
        # selector on every call.
        self._readable = select.poll()
        self._readable.register(self._pipe.fileno(), select.POLLIN)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        self.cold_start_ms = (time.perf_counter() - started) * 1000

    @property
    def pid(self) -> int:
        return self._process.pid or 0

    def _wait_ready(self) -> None:
        if not self._pipe.poll(START_TIMEOUT):
            raise HandlerImportError(f"{self.name}: sandbox not ready within {START_TIMEOUT:.0f} s")
        try:
            status = self._pipe.recv()
        except EOFError:
            self._process.join(1)
            raise HandlerImportError(
                f"{self.name}: sandbox exited (code {self._process.exitcode}) while starting"
            ) from None
        if status[0] != READY:
            raise HandlerImportError(status[2] if len(status) > 2 else str(status))

    def send(self, request_id: str, event: Any, timeout: float) -> None:
        self.invocations += 1
        # Plain pickle: an event is JSON-like data, and Connection.send's ForkingPickler
        # copies the copyreg dispatch table on every call, for the file descriptors
        # and connections it can also carry.
        request = pickle.dumps((request_id, event, timeout), pickle.HIGHEST_PROTOCOL)
        try:
            self._pipe.send_bytes(request)
        except OSError:  # it died while idle (killed from outside, out of memory...)
            self._process.join(1)
            raise SandboxCrashed(
                f"the sandbox had exited (code {self._process.exitcode}) before the invocation"
            ) from None

    def reply_within(self, timeout: float) -> tuple[Any, ...] | None:
        """The invocation's reply, or None if it did not come within `timeout`."""
        # The end of the sandbox (POLLHUP) wakes it too; reply() tells the crash.
        if not self._readable.poll(math.ceil(max(0.0, timeout) * 1000)):
            return None
        return self.reply()

    def reply(self) -> tuple[Any, ...]:
        try:
            reply: tuple[Any, ...] = self._pipe.recv()
        except (EOFError, OSError):
            self._process.join(1)
            raise SandboxCrashed(
                f"the sandbox exited (code {self._process.exitcode}) during the invocation"
            ) from None
        if reply[0] != EMF:
            return reply
        if self._emf_sink is not None:
            self._emf_sink(self.name, reply[1])
        answer: tuple[Any, ...] = reply[2]
        return answer

    async def reply_async(self, timeout: float) -> tuple[Any, ...] | None:
        """reply_within, awaited: the event loop wakes when the pipe is readable.

        One future that the reader or the timer settles (True: readable), where
        asyncio.wait_for added a second future, a partial and done-callbacks."""
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[bool] = loop.create_future()
        fd = self._pipe.fileno()
        loop.add_reader(fd, _settle_once, readable, True)
        timer = loop.call_later(max(0.0, timeout), _settle_once, readable, False)
        try:
            if not await readable:
                return None
        finally:
            timer.cancel()
            loop.remove_reader(fd)
        return self.reply()

    def retire(self) -> None:
        """Ask an idle sandbox to end (it finishes on its own)."""
        with contextlib.suppress(OSError):
            self._pipe.send(None)
        self._pipe.close()

    def kill(self) -> None:
        """Stop it now, whatever it is running (Lambda stopping a timed-out environment)."""
        self._process.kill()
        self._process.join(5)
        self._pipe.close()

    def join(self, timeout: float) -> None:
        self._process.join(timeout)
        if self._process.is_alive():
            self.kill()


class SandboxBudget:
    """The most sandboxes the whole runtime may have at once, over all its functions
    (Lambda's account-wide concurrency limit, sized for the machine: every sandbox is a
    process with its own memory, clients and database connections).

    At most `starting` of them start at once, over all functions (a cold start is an
    import, CPU-bound: side by side beyond the cores they only slow each other down,
    and a burst of 300 requests at --concurrency 50 started 48 API sandboxes at once
    while every other function waited); Lambda too bounds how fast functions scale.

    A function that needs one more sandbox when the budget is spent gets the place of
    the least recently used idle sandbox of another function, which ends, as Lambda
    reclaims idle environments; with none idle, it waits until one is. That is done by
    one thread of the budget's (`_reclaim`), which holds no pool's lock while it works,
    so pools (which call the budget under their own lock) never wait on each other."""

    def __init__(self, total: int, starting: int) -> None:
        self.total = max(1, total)
        self.max_starting = max(1, starting)
        self.used = 0
        self.starting = 0
        self.pools: list[SandboxPool] = []
        self._hungry: list[SandboxPool] = []  # pools whose due waiters found no room
        self._lock = threading.Lock()  # taken last: under a pool's lock, never around one
        self._wake = threading.Event()
        self._reclaimer: threading.Thread | None = None

    def take(self, pool: SandboxPool, *, force: bool = False) -> bool:
        """A place for one more sandbox of `pool`, to start now; False (and `pool` kicked
        later) if there is none, or if as many as may start at once are starting."""
        with self._lock:
            if force or (self.used < self.total and self.starting < self.max_starting):
                self.used += 1
                self.starting += 1
                return True
            if pool in self._hungry:
                return False
            self._hungry.append(pool)
            if self._reclaimer is None:
                self._reclaimer = threading.Thread(
                    target=self._reclaim, name="sandbox-budget", daemon=True
                )
                self._reclaimer.start()
        self._wake.set()
        return False

    @property
    def free(self) -> int:
        """Places left for sandboxes of any function."""
        with self._lock:
            return self.total - self.used

    def release(self, count: int) -> None:
        with self._lock:
            self.used -= count
            hungry = bool(self._hungry)
        if hungry:
            self._wake.set()

    def started(self) -> None:
        """A cold start has ended (ready or failed)."""
        with self._lock:
            self.starting -= 1
            hungry = bool(self._hungry)
        if hungry:
            self._wake.set()

    def idle_now(self) -> None:
        """A sandbox has just become idle: a hungry pool may take its place."""
        if self._hungry:
            self._wake.set()

    def _reclaim(self) -> None:
        while True:
            # Looks again every second while some pool is hungry: idle sandboxes age.
            self._wake.wait(RECLAIM_CHECK if self._hungry else None)
            self._wake.clear()
            with self._lock:
                hungry = list(self._hungry)
            for pool in hungry:
                with self._lock:
                    if self.starting >= self.max_starting:
                        break  # until a start ends (`started`)
                    room = self.used < self.total
                if not room and not self._reclaim_for(pool):
                    continue  # stays hungry until a sandbox ends or ages
                with self._lock:
                    self._hungry.remove(pool)
                pool.kick()

    def _reclaim_for(self, pool: SandboxPool) -> bool:
        """A function with no sandbox takes any idle one's place; one that has some
        (its own will come back) only the place of one idle for RECLAIM_IDLE_AFTER:
        in a burst, every stage's sandboxes are idle for moments between batches, and
        taking those places cost a cold start each, back and forth."""
        idle_for = 0.0 if not pool.pids else RECLAIM_IDLE_AFTER
        others = sorted(
            (other for other in self.pools if other is not pool and other.idle_count),
            key=lambda other: -other.idle_count,
        )
        return any(other.reclaim_idle(idle_for) for other in others)


class _Waiter:
    """An invocation waiting for a sandbox. What it gets (a sandbox, or the error of a
    cold start) is set under its pool's lock; then `wake` tells it."""

    __slots__ = ("due", "error", "sandbox", "wake")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.due = False  # it may have a cold start of its own (see SandboxPool._scale_up)
        self.sandbox: Sandbox | None = None
        self.error: BaseException | None = None

    @property
    def answered(self) -> bool:
        return self.sandbox is not None or self.error is not None

    def result(self) -> Sandbox:
        if self.error is not None:
            raise self.error
        assert self.sandbox is not None
        return self.sandbox


class SandboxPool:
    """The sandboxes of one function.

    Invocations that find none idle wait in line, and a sandbox that comes back (or
    starts) goes straight to the one that has waited longest: one wake-up per sandbox,
    where waking every waiter to look cost the gateways' event loop a tenth of its CPU
    in a burst. A waiter becomes *due* after SCALE_UP_AFTER (at once when the function
    has no sandbox yet), and there are as many cold starts under way as due waiters,
    within the function's limit: a burst's sandboxes start side by side, as on Lambda."""

    def __init__(
        self,
        plan: SandboxPlan,
        limit: int,
        emf_sink: EmfSink | None = None,
        budget: SandboxBudget | None = None,
    ) -> None:
        self.plan = plan
        self.emf_sink = emf_sink
        self.limit = max(1, limit)
        self.budget = budget
        self.generation = 0
        self.cold_starts = 0
        self.slowest_cold_start = 0.0  # seconds, the longest of this function's so far
        self._idle: list[Sandbox] = []
        self._all: set[Sandbox] = set()
        self._starting = 0
        self._waiters: deque[_Waiter] = deque()
        self._due = 0  # waiters in line that are due
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # for stop(): nothing running
        self._stopping = False

    @property
    def name(self) -> str:
        return self.plan.spec.logical_id

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [sandbox.pid for sandbox in self._all]

    def take(self) -> Sandbox:
        """A warm sandbox, or the first to be free (a new one, or one that comes back)."""
        with self._lock:
            sandbox = self._take_now()
            if sandbox is not None:
                return sandbox
            gate = threading.Lock()
            gate.acquire()
            waiter = self._line_up(gate.release)
        if not waiter.due and gate.acquire(timeout=SCALE_UP_AFTER):
            return waiter.result()
        self._due_now(waiter)
        gate.acquire()
        return waiter.result()

    async def take_async(self) -> Sandbox:
        """take(), awaited: the event loop waits without a thread of its own."""
        loop = asyncio.get_running_loop()
        with self._lock:
            sandbox = self._take_now()
            if sandbox is not None:
                return sandbox
            woken: asyncio.Future[None] = loop.create_future()
            waiter = self._line_up(_waker(loop, woken))
        timer = None if waiter.due else loop.call_later(SCALE_UP_AFTER, self._due_now, waiter)
        try:
            await woken
        except BaseException:  # cancelled: out of line, and what it got goes back
            with self._lock:
                if not waiter.answered:
                    self._leave_line(waiter)
            if waiter.sandbox is not None:
                self.give_back(waiter.sandbox)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return waiter.result()

    def _due_now(self, waiter: _Waiter) -> None:
        """It has waited SCALE_UP_AFTER."""
        with self._lock:
            if not waiter.answered and not waiter.due:
                self._make_due(waiter)

    # -- under the lock ----------------------------------------------------------------

    def _take_now(self) -> Sandbox | None:
        if self._stopping:
            raise RuntimeError(f"{self.name}: the runtime is stopping")
        return self._idle.pop() if self._idle else None  # the most recently used: warmest

    def _line_up(self, wake: Callable[[], None]) -> _Waiter:
        waiter = _Waiter(wake)
        self._waiters.append(waiter)
        if not self._all:  # nothing warm will come back: start one now
            self._make_due(waiter)
        return waiter

    def _make_due(self, waiter: _Waiter) -> None:
        waiter.due = True
        self._due += 1
        self._scale_up()

    def _leave_line(self, waiter: _Waiter) -> None:
        self._waiters.remove(waiter)
        if waiter.due:
            self._due -= 1

    def _answer(
        self, waiter: _Waiter, sandbox: Sandbox | None, error: BaseException | None
    ) -> None:
        self._leave_line(waiter)
        waiter.sandbox, waiter.error = sandbox, error
        waiter.wake()

    def _scale_up(self) -> None:
        """As many cold starts under way as due waiters, within the limit."""
        while (
            not self._stopping
            and self._starting < self._due
            and len(self._all) + self._starting < self.limit
        ):
            if self.budget is not None and not self.budget.take(self):
                return  # the budget calls `kick` when there is room again
            self._starting += 1
            threading.Thread(
                target=self._start_in_background,
                args=(self.generation,),
                name=f"cold-start-{self.name}",
                daemon=True,
            ).start()

    def _forget(self, sandbox: Sandbox) -> None:
        if sandbox in self._all:  # not after stop(), which forgot them all
            self._all.discard(sandbox)
            self._release(1)

    def _release(self, count: int) -> None:
        if self.budget is not None and count:
            self.budget.release(count)

    # -- the runtime's budget ------------------------------------------------------------

    def kick(self) -> None:
        """There may be room in the budget again: start what the due waiters need."""
        with self._lock:
            self._scale_up()

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def ready_within(self, seconds: float) -> int:
        """How many more invocations would have a sandbox within `seconds`: the idle
        ones, less those already waiting, plus the cold starts the function's limit and
        the runtime's budget still allow, if every cold start of this function so far
        (one at least) took less than `seconds`."""
        with self._lock:
            ready = len(self._idle) - len(self._waiters)
            if self.cold_starts and self.slowest_cold_start < seconds:
                room = self.limit - len(self._all) - self._starting
                if self.budget is not None:
                    room = min(room, self.budget.free)
                ready += max(0, room)
            return ready

    def reclaim_idle(self, idle_for: float) -> bool:
        """End the least recently used idle sandbox, if idle for `idle_for` seconds,
        for another function; False if there is none such."""
        with self._lock:
            if not self._idle or time.monotonic() - self._idle[0].idle_since < idle_for:
                return False
            sandbox = self._idle.pop(0)
            self._all.discard(sandbox)
            self._release(1)
        log.info("%s: idle sandbox pid %d ends, for another function", self.name, sandbox.pid)
        sandbox.retire()
        return True

    # -- starting ------------------------------------------------------------------------

    def _start_in_background(self, generation: int) -> None:
        try:
            sandbox = self._start(generation)
        except BaseException as error:
            log.error("%s: %s", self.name, error)
            with self._lock:
                # The due waiters that the starts still under way cannot serve get the
                # error (all of them when none is: an import error fails every one).
                due = [waiter for waiter in self._waiters if waiter.due]
                for waiter in due[self._starting :] or due[:1]:
                    self._answer(waiter, None, error)
            return
        self.give_back(sandbox)

    def _start(self, generation: int) -> Sandbox:
        try:
            sandbox = Sandbox(self.plan, generation, self.emf_sink)
        except BaseException:
            if self.budget is not None:
                self.budget.started()
            with self._lock:
                self._starting -= 1
                self._release(1)
                self._settled.notify_all()
            raise
        if self.budget is not None:
            self.budget.started()
        with self._lock:
            self._starting -= 1
            self._all.add(sandbox)
            self.cold_starts += 1
            self.slowest_cold_start = max(self.slowest_cold_start, sandbox.cold_start_ms / 1000)
            count = len(self._all)
        log.info(
            "%s cold start: sandbox pid %d ready in %.0f ms (%d of at most %d)",
            self.name,
            sandbox.pid,
            sandbox.cold_start_ms,
            count,
            self.limit,
        )
        return sandbox

    # -- coming back -----------------------------------------------------------------------

    def give_back(self, sandbox: Sandbox) -> None:
        """A sandbox whose invocation ended normally: to the longest waiter, or warm."""
        with self._lock:
            stale = self._stopping or sandbox.generation != self.generation
            if stale:
                self._forget(sandbox)
                self._scale_up()  # its place is free for a fresh one
                self._settled.notify_all()
            elif self._waiters:
                self._answer(self._waiters[0], sandbox, None)
            else:
                sandbox.idle_since = time.monotonic()
                self._idle.append(sandbox)
                if self.budget is not None:
                    self.budget.idle_now()
        if stale:
            sandbox.retire()

    def discard(self, sandbox: Sandbox) -> None:
        """Kill a sandbox that timed out or crashed; a fresh one will replace it."""
        sandbox.kill()
        with self._lock:  # its place is freed only now that it is dead
            self._forget(sandbox)
            self._scale_up()
            self._settled.notify_all()

    def replan(self, plan: SandboxPlan) -> None:
        """New settings (an environment): later invocations run in sandboxes made so."""
        with self._lock:
            self.plan = plan
        self.recycle()

    def recycle(self) -> None:
        """New code: idle sandboxes end now, busy ones when their invocation returns."""
        with self._lock:
            self.generation += 1
            idle, self._idle = self._idle, []
            self._all.difference_update(idle)
            self._release(len(idle))
        for sandbox in idle:
            sandbox.retire()

    def warm_up(self) -> None:
        """Start one sandbox now (import errors raise here) and keep it warm."""
        with self._lock:
            if self.budget is not None:
                self.budget.take(self, force=True)
            self._starting += 1
            generation = self.generation
        self.give_back(self._start(generation))

    def stop(self, timeout: float) -> None:
        """No new invocations; wait (bounded) for running ones, then end every sandbox."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            stopping = RuntimeError(f"{self.name}: the runtime is stopping")
            while self._waiters:
                self._answer(self._waiters[0], None, stopping)
            self._settled.wait_for(
                lambda: len(self._idle) == len(self._all) and not self._starting,
                max(0.0, deadline - time.monotonic()),
            )
            idle, busy = list(self._idle), [s for s in self._all if s not in self._idle]
            self._release(len(self._all))
            self._idle, self._all = [], set()
        if busy:
            log.warning("%s: %d invocation(s) still running; stopping them", self.name, len(busy))
        for sandbox in idle:
            sandbox.retire()
        for sandbox in idle:
            sandbox.join(2)
        for sandbox in busy:
            sandbox.kill()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _waker(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> Callable[[], None]:
    """What resolves `future` (of `loop`, whose thread calls this) from any thread."""
    loop_thread = threading.get_ident()

    def wake() -> None:
        if threading.get_ident() == loop_thread:
            _resolve(future)
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(_resolve, future)

    return wake


def _settle_once(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


def start_all(pools: list[SandboxPool], action: Callable[[SandboxPool], None]) -> None:
    """Run `action` on every pool at once (cold starts overlap), raising the first error."""
    errors: list[BaseException] = []

    def run(pool: SandboxPool) -> None:
        try:
            action(pool)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(pool,), daemon=True) for pool in pools]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
