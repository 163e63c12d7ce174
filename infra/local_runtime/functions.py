"""Invoking a function in-process, the way Lambda would: with a context, a timeout and
one log line per invocation.

Each invocation runs on a thread of its own. A thread cannot be killed, so an
invocation that runs past the function's Timeout is *reported* as timed out (as Lambda
reports "Task timed out after N seconds") and its thread is left to finish in the
background; its late result is discarded. A fresh thread per call means such leftovers
never starve a pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from local_runtime.chalice_support import prepare_handler
from local_runtime.function_code import FunctionCode
from local_runtime.lambda_context import LambdaContext
from local_runtime.specs import FunctionSpec

log = logging.getLogger("local_runtime.invocations")

OK, ERROR, TIMEOUT = "ok", "error", "timeout"


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
        if self.outcome == TIMEOUT:
            return str(self.error)
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
        code: FunctionCode,
        in_flight: InFlight,
        correlation_keys: Iterable[str] = (),
    ) -> None:
        self.spec = spec
        self.code = code
        self._in_flight = in_flight
        self._correlation_keys = tuple(correlation_keys)

    @property
    def name(self) -> str:
        return self.spec.logical_id

    def submit(self, event: Any) -> tuple[LambdaContext, Future[InvocationResult]]:
        """Start the invocation on its own thread; the future holds its result."""
        context = LambdaContext(
            function_name=self.spec.function_name,
            invoked_function_arn=self.spec.arn,
            memory_limit_in_mb=self.spec.memory_mb,
            timeout_seconds=self.spec.timeout,
        )
        future: Future[InvocationResult] = Future()
        self._in_flight.enter()
        thread = threading.Thread(
            target=self._run,
            args=(event, context, future),
            name=f"lambda-{self.name}-{context.aws_request_id[:8]}",
            daemon=True,
        )
        thread.start()
        return context, future

    def _run(self, event: Any, context: LambdaContext, future: Future[InvocationResult]) -> None:
        started = time.perf_counter()
        try:
            value = self.code.handler()(event, context)
            result = InvocationResult(self.name, context.aws_request_id, OK, value=value)
        except Exception as error:
            result = InvocationResult(self.name, context.aws_request_id, ERROR, error=error)
            log.error(
                "%s %s raised:\n%s",
                self.name,
                context.aws_request_id,
                "".join(traceback.format_exception(error)).rstrip(),
            )
        finally:
            self._in_flight.leave()
        result.duration_ms = (time.perf_counter() - started) * 1000
        if not future.set_running_or_notify_cancel():
            return
        future.set_result(result)

    def invoke(
        self, event: Any, describe: Callable[[InvocationResult], str] | None = None
    ) -> InvocationResult:
        """Invoke and wait, at most the function's Timeout; logs one line."""
        context, future = self.submit(event)
        try:
            result = future.result(timeout=self.spec.timeout)
        except FutureTimeout:
            future.cancel()
            result = self._timed_out(context)
        self.log(result, event, describe)
        return result

    async def invoke_async(
        self, event: Any, describe: Callable[[InvocationResult], str] | None = None
    ) -> InvocationResult:
        """The same, awaited from the event loop: the handler never runs on the loop."""
        context, future = self.submit(event)
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), self.spec.timeout)
        except TimeoutError:
            result = self._timed_out(context)
        self.log(result, event, describe)
        return result

    def _timed_out(self, context: LambdaContext) -> InvocationResult:
        message = f"Task timed out after {self.spec.timeout:.2f} seconds"
        return InvocationResult(
            self.name,
            context.aws_request_id,
            TIMEOUT,
            error=TimeoutError(message),
            duration_ms=self.spec.timeout * 1000,
        )

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


def make_functions(
    specs: Iterable[FunctionSpec],
    in_flight: InFlight,
    *,
    correlation_keys: Iterable[str],
    websocket_endpoint: str | None,
) -> dict[str, LambdaFunction]:
    """The functions of `specs`, each handler prepared as it is imported (see
    chalice_support: thread safety, and the local @connections endpoint)."""

    def on_load(handler: Any) -> None:
        prepare_handler(handler, websocket_endpoint)

    return {
        spec.logical_id: LambdaFunction(
            spec, FunctionCode(spec, on_load=on_load), in_flight, correlation_keys
        )
        for spec in specs
    }
