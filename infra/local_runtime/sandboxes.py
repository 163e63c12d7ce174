"""A function's sandboxes: its own warm processes, started on demand, at most `limit`.

As on Lambda, a sandbox runs one invocation at a time. The pool hands out a warm (idle)
sandbox if there is one. If not, and none comes back within SCALE_UP_AFTER, and the
function has fewer than `limit`, it starts one (a cold start, logged with its duration),
one at a time per function, and the caller takes whichever sandbox is free first: the
new one, or a warm one that finished meanwhile. Lambda would start one sandbox per
waiting invocation at once; here a cold start costs a second or more of a shared CPU
while an invocation takes milliseconds, and a burst that started a sandbox per request
(twenty WebSocket connections at once) stalled every function for seconds.

A sandbox that timed out or crashed is killed and never comes back, so the next
invocation gets a fresh one; after a code change (`recycle`) the idle ones stop at once
and the busy ones when their invocation ends.

The parent talks to a sandbox over one multiprocessing pipe: one pickled request and
one JSON reply per invocation, no process or thread started per call.

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
import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from local_runtime.function_code import HandlerImportError
from local_runtime.sandbox_process import READY, SandboxPlan, sandbox_main

log = logging.getLogger("local_runtime.sandboxes")

START_TIMEOUT = 60.0  # fork + imports of a big handler on a busy machine
# How long an invocation waits for a busy sandbox to come back before another starts.
# A new sandbox costs its import and, on its first invocation, its clients and
# connections (0.2-1.7 s each on two busy cores for this project's functions), while a
# warm invocation takes milliseconds; five orders at once took 6-8 s to show their first
# state when every waiting invocation started a sandbox, against 0.3 s in one process.
SCALE_UP_AFTER = 0.2
# Libraries Lambda functions commonly import, loaded once in the fork server; those that
# are not installed are skipped. Nothing a function's own code or layers define, and
# nothing that reads the environment or starts threads when imported.
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
)
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(list(SANDBOX_PRELOAD))


class SandboxCrashed(RuntimeError):
    """The sandbox process ended while it ran an invocation."""


class Sandbox:
    """One process of one function, and the parent's end of its pipe."""

    def __init__(self, plan: SandboxPlan, generation: int) -> None:
        self.name = plan.spec.logical_id
        self.generation = generation
        self.invocations = 0
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
        try:
            self._pipe.send((request_id, event, timeout))
        except OSError:  # it died while idle (killed from outside, out of memory...)
            self._process.join(1)
            raise SandboxCrashed(
                f"the sandbox had exited (code {self._process.exitcode}) before the invocation"
            ) from None

    def reply_within(self, timeout: float) -> tuple[Any, ...] | None:
        """The invocation's reply, or None if it did not come within `timeout`."""
        if not self._pipe.poll(max(0.0, timeout)):
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
        return reply

    async def reply_async(self, timeout: float) -> tuple[Any, ...] | None:
        """reply_within, awaited: the event loop wakes when the pipe is readable."""
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        fd = self._pipe.fileno()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await asyncio.wait_for(readable, max(0.0, timeout))
        except TimeoutError:
            return None
        finally:
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


class SandboxPool:
    """The sandboxes of one function."""

    def __init__(self, plan: SandboxPlan, limit: int) -> None:
        self.plan = plan
        self.limit = max(1, limit)
        self.generation = 0
        self.cold_starts = 0
        self._idle: list[Sandbox] = []
        self._all: set[Sandbox] = set()
        self._starting = 0
        self._failure: BaseException | None = None  # the last cold start that failed
        self._failures = 0
        self._changed = threading.Condition()
        self._stopping = False

    @property
    def name(self) -> str:
        return self.plan.spec.logical_id

    @property
    def pids(self) -> list[int]:
        with self._changed:
            return [sandbox.pid for sandbox in self._all]

    def take_idle(self) -> Sandbox | None:
        """A warm sandbox if one is free now (never waits)."""
        with self._changed:
            return self._idle.pop() if self._idle else None

    def take(self) -> Sandbox:
        """A warm sandbox, or the first to be free (a new one, or one that comes back)."""
        scale_up_at = time.monotonic() + SCALE_UP_AFTER
        with self._changed:
            failures = self._failures
            while True:
                if self._stopping:
                    raise RuntimeError(f"{self.name}: the runtime is stopping")
                if self._idle:
                    return self._idle.pop()  # the most recently used: the warmest
                if self._failures != failures and self._failure is not None:
                    raise self._failure
                wait = scale_up_at - time.monotonic() if self._all else 0.0
                if wait <= 0 and not self._starting and len(self._all) < self.limit:
                    self._starting = 1
                    generation = self.generation
                    threading.Thread(
                        target=self._start_in_background,
                        args=(generation,),
                        name=f"cold-start-{self.name}",
                        daemon=True,
                    ).start()
                self._changed.wait(wait if wait > 0 else None)

    def _start_in_background(self, generation: int) -> None:
        try:
            sandbox = self._start(generation)
        except BaseException as error:
            with self._changed:
                self._failure = error
                self._failures += 1
                self._changed.notify_all()
            log.error("%s: %s", self.name, error)
            return
        self.give_back(sandbox)

    def _start(self, generation: int) -> Sandbox:
        try:
            sandbox = Sandbox(self.plan, generation)
        except BaseException:
            with self._changed:
                self._starting -= 1
                self._changed.notify_all()
            raise
        with self._changed:
            self._starting -= 1
            self._all.add(sandbox)
            self.cold_starts += 1
        log.info(
            "%s cold start: sandbox pid %d ready in %.0f ms (%d of at most %d)",
            self.name,
            sandbox.pid,
            sandbox.cold_start_ms,
            len(self._all),
            self.limit,
        )
        return sandbox

    def give_back(self, sandbox: Sandbox) -> None:
        """A sandbox whose invocation ended normally: warm for the next one."""
        with self._changed:
            stale = self._stopping or sandbox.generation != self.generation
            if stale:
                self._all.discard(sandbox)
            else:
                self._idle.append(sandbox)
            self._changed.notify_all()
        if stale:
            sandbox.retire()

    def discard(self, sandbox: Sandbox) -> None:
        """Kill a sandbox that timed out or crashed; a fresh one will replace it."""
        sandbox.kill()
        with self._changed:
            self._all.discard(sandbox)
            self._changed.notify_all()

    def replan(self, plan: SandboxPlan) -> None:
        """New settings (an environment): later invocations run in sandboxes made so."""
        with self._changed:
            self.plan = plan
        self.recycle()

    def recycle(self) -> None:
        """New code: idle sandboxes end now, busy ones when their invocation returns."""
        with self._changed:
            self.generation += 1
            idle, self._idle = self._idle, []
            self._all.difference_update(idle)
            self._changed.notify_all()
        for sandbox in idle:
            sandbox.retire()

    def warm_up(self) -> None:
        """Start one sandbox now (import errors raise here) and keep it warm."""
        with self._changed:
            self._starting += 1
            generation = self.generation
        self.give_back(self._start(generation))

    def stop(self, timeout: float) -> None:
        """No new invocations; wait (bounded) for running ones, then end every sandbox."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
            self._changed.wait_for(
                lambda: len(self._idle) == len(self._all) and not self._starting,
                max(0.0, deadline - time.monotonic()),
            )
            idle, busy = list(self._idle), [s for s in self._all if s not in self._idle]
            self._idle, self._all = [], set()
        if busy:
            log.warning("%s: %d invocation(s) still running; stopping them", self.name, len(busy))
        for sandbox in idle:
            sandbox.retire()
        for sandbox in idle:
            sandbox.join(2)
        for sandbox in busy:
            sandbox.kill()


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
