"""Invoking a function the way Lambda does: in one of the function's own sandboxes
(sandboxes.py), with its Timeout enforced, and one log line per invocation.

The caller's thread (or the event loop, for the gateways) sends the event to a warm
sandbox and waits for the reply, at most the function's Timeout. At Timeout the sandbox
is killed, as Lambda stops a timed-out execution environment: no code of that
invocation runs afterwards, the result is "Task timed out after N seconds", and the
next invocation starts a fresh sandbox.

A caller may stop waiting earlier than the function's Timeout (`give_up_after`: API
Gateway's integration timeout): it gets an INTEGRATION_TIMEOUT result while the
invocation runs on to its own end, as on AWS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from local_runtime.sandbox_process import OK as REPLY_OK
from local_runtime.sandboxes import Sandbox, SandboxCrashed, SandboxPool
from local_runtime.specs import FunctionSpec

log = logging.getLogger("local_runtime.invocations")

OK, ERROR, TIMEOUT = "ok", "error", "timeout"
INTEGRATION_TIMEOUT = "integration timeout"  # the caller stopped waiting; it runs on


class HandlerError(Exception):
    """What a handler raised in its sandbox: its type's name, message and traceback."""

    def __init__(self, type_name: str, message: str, traceback_text: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.traceback_text = traceback_text


@dataclass
class InvocationResult:
    function: str
    request_id: str
    outcome: str  # ok | error | timeout
    value: Any = None
    error: BaseException | None = None
    duration_ms: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.outcome == OK

    def error_message(self) -> str:
        if self.outcome in (TIMEOUT, INTEGRATION_TIMEOUT):
            return str(self.error)
        if isinstance(self.error, HandlerError):
            return f"{self.error.type_name}: {self.error}"
        return f"{type(self.error).__name__}: {self.error}" if self.error else ""


class InFlight:
    """Counts invocations still running, so shutdown can wait for them (bounded)."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def enter(self) -> None:
        with self._idle:
            self._count += 1

    def leave(self) -> None:
        with self._idle:
            self._count -= 1
            if not self._count:  # what wait_idle waits for
                self._idle.notify_all()

    @property
    def count(self) -> int:
        return self._count

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


MAX_CORRELATION_BODY = 64 * 1024


def correlation_ids(event: Any, keys: Iterable[str]) -> list[str]:
    """Values of `keys` found in the event's JSON bodies, path and query parameters."""
    keys = tuple(keys)
    if not keys or not isinstance(event, dict):
        return []
    places: list[Any] = [event.get("pathParameters"), event.get("queryStringParameters")]
    bodies = [event.get("body")] + [
        r.get("body") for r in event.get("Records") or [] if isinstance(r, dict)
    ]
    for body in bodies:
        # Ids travel in small messages; a body of megabytes is not parsed just for a log
        # line (this runs on the gateway's event loop).
        if isinstance(body, str) and body[:1] in "{[" and len(body) <= MAX_CORRELATION_BODY:
            try:
                body = json.loads(body)
            except (ValueError, RecursionError):  # not JSON, or nested thousands deep
                continue
        places.append(body)
        if isinstance(body, dict):
            places.extend(v for v in body.values() if isinstance(v, dict))
    found: list[str] = []
    for place in places:
        if isinstance(place, dict):
            for key in keys:
                value = place.get(key)
                if isinstance(value, str | int) and _one_line(str(value)) not in found:
                    found.append(_one_line(str(value)))
    return found


def _one_line(value: str) -> str:
    """`value` as logged: a client wrote it, so a newline in it must not start a line
    of its own (control characters become escapes)."""
    return value if value.isprintable() else value.encode("unicode_escape").decode("ascii")


class LambdaFunction:
    def __init__(
        self,
        spec: FunctionSpec,
        sandboxes: SandboxPool,
        in_flight: InFlight,
        correlation_keys: Iterable[str] = (),
    ) -> None:
        self.spec = spec
        self.sandboxes = sandboxes
        self._in_flight = in_flight
        self._correlation_keys = tuple(correlation_keys)
        self._running_on: set[asyncio.Task[InvocationResult]] = set()

    @property
    def name(self) -> str:
        return self.spec.logical_id

    def recycle(self) -> None:
        """The code changed: later invocations run in fresh sandboxes."""
        self.sandboxes.recycle()

    def invoke(
        self,
        event: Any,
        describe: Callable[[InvocationResult], str] | None = None,
        *,
        started: Callable[[], None] | None = None,
    ) -> InvocationResult:
        """Invoke and wait, at most the function's Timeout; logs one line. `started` is
        called once the invocation has its sandbox (not at all if it gets none)."""
        request_id = str(uuid.uuid4())
        self._in_flight.enter()
        try:
            sandbox = self.sandboxes.take()
            if started is not None:
                started()
            started_at = time.perf_counter()
            try:
                sandbox.send(request_id, event, self.spec.timeout)
                reply = sandbox.reply_within(self.spec.timeout)
            except SandboxCrashed as crash:
                reply = ("crashed", crash)
            except BaseException:
                self.sandboxes.discard(sandbox)  # its reply would be the next caller's
                raise
            result = self._settle(sandbox, request_id, reply, started_at)
        except Exception as error:  # the sandbox could not start or be reached
            result = InvocationResult(self.name, request_id, ERROR, error=error)
        finally:
            self._in_flight.leave()
        self.log(result, event, describe)
        return result

    async def invoke_async(
        self,
        event: Any,
        describe: Callable[[InvocationResult], str] | None = None,
        *,
        give_up_after: float | None = None,
    ) -> InvocationResult:
        """The same, awaited from the event loop (which never runs handler code).

        With `give_up_after` shorter than the function's Timeout, the caller gets an
        INTEGRATION_TIMEOUT result then, and the invocation runs on to its own end."""
        request_id = str(uuid.uuid4())
        if give_up_after is None or give_up_after >= self.spec.timeout:
            # Awaited in the caller's task: a task of its own would only cost its
            # creation and a turn of the event loop (cancelling the caller cancels
            # the invocation either way).
            return await self._invoke_async(request_id, event, describe)
        task = asyncio.ensure_future(self._invoke_async(request_id, event, describe))
        self._running_on.add(task)  # keeps it alive once the caller stops waiting
        task.add_done_callback(self._running_on.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(task), give_up_after)
        except TimeoutError:
            message = f"the caller stopped waiting after {give_up_after:g} s"
            return InvocationResult(
                self.name,
                request_id,
                INTEGRATION_TIMEOUT,
                error=TimeoutError(message),
                duration_ms=give_up_after * 1000,
            )

    async def _invoke_async(
        self, request_id: str, event: Any, describe: Callable[[InvocationResult], str] | None
    ) -> InvocationResult:
        self._in_flight.enter()
        try:
            sandbox = await self.sandboxes.take_async()
            started = time.perf_counter()
            try:
                sandbox.send(request_id, event, self.spec.timeout)
                reply = await sandbox.reply_async(self.spec.timeout)
            except SandboxCrashed as crash:
                reply = ("crashed", crash)
            except BaseException:  # cancelled with the event loop, among others
                self.sandboxes.discard(sandbox)  # its reply would be the next caller's
                raise
            result = self._settle(sandbox, request_id, reply, started)
        except Exception as error:
            result = InvocationResult(self.name, request_id, ERROR, error=error)
        finally:
            self._in_flight.leave()
        self.log(result, event, describe)
        return result

    def _settle(
        self, sandbox: Sandbox, request_id: str, reply: tuple[Any, ...] | None, started: float
    ) -> InvocationResult:
        """The result of a reply (None: Timeout reached); the sandbox back or killed."""
        duration_ms = (time.perf_counter() - started) * 1000
        if reply is None:
            self.sandboxes.discard(sandbox)  # killed before anyone else may start
            message = f"Task timed out after {self.spec.timeout:.2f} seconds"
            return InvocationResult(
                self.name,
                request_id,
                TIMEOUT,
                error=TimeoutError(message),
                duration_ms=self.spec.timeout * 1000,
            )
        if reply[0] == "crashed":
            self.sandboxes.discard(sandbox)
            return InvocationResult(
                self.name, request_id, ERROR, error=reply[1], duration_ms=duration_ms
            )
        self.sandboxes.give_back(sandbox)
        if reply[0] == REPLY_OK:
            value = json.loads(reply[1])
            return InvocationResult(self.name, request_id, OK, value=value, duration_ms=duration_ms)
        error = HandlerError(reply[1], reply[2], reply[3])
        if error.traceback_text:
            log.error("%s %s raised:\n%s", self.name, request_id, error.traceback_text)
        return InvocationResult(self.name, request_id, ERROR, error=error, duration_ms=duration_ms)

    def log(
        self,
        result: InvocationResult,
        event: Any,
        describe: Callable[[InvocationResult], str] | None = None,
    ) -> None:
        outcome = describe(result) if describe is not None else result.outcome
        if result.outcome != OK:
            outcome = f"{outcome} ({result.error_message()})"
        ids = correlation_ids(event, self._correlation_keys)
        level = logging.INFO if result.outcome == OK else logging.WARNING
        log.log(
            level,
            "%s request=%s duration=%.1fms outcome=%s%s",
            self.name,
            result.request_id,
            result.duration_ms,
            outcome,
            f" correlation={','.join(ids)}" if ids else "",
        )
