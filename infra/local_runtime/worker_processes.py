"""SQS pollers in worker processes, so queue-driven invocations are not confined to one
interpreter.

All of the runtime's threads share one GIL, so in one process the gateways, the pollers
and every invocation together get one core's worth of Python at most. With
`worker_processes=N`, every SQS event source mapping is polled from N processes
instead, each with its share of the mapping's `MaximumConcurrency` (10 over 2 workers:
5 each, never more than the mapping allows in all), much as Lambda runs a busy mapping
in several containers. The parent keeps the HTTP and WebSocket APIs, `@connections`
and the schedules.

A worker is spawned (never forked: the parent runs threads and an event loop) with
what it needs already resolved: the function specs, the queues, the SQS and a copy of
the os.environ the parent applied, set again in the worker. (Relying on inheritance
alone lost it once: inside the full test suite a worker ran without the variables the
runtime had applied.) It imports its handlers, starts its pollers and reports ready. It
stops when the parent asks (polling stops, running invocations may finish, as in the
parent), and at once if the parent dies: a SIGKILLed runtime leaves nothing behind, and
its unfinished messages come back after their visibility timeout, as a crashed
Lambda's do.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, cast

from local_runtime.event_sources import start_pollers
from local_runtime.functions import InFlight, make_functions
from local_runtime.reloader import Reloader
from local_runtime.specs import FunctionSpec, QueueSpec
from local_runtime.sqs_backends import SqsTarget

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # imports of a big handler set on a busy machine
READY, STOP = "ready", "stop"
DEFAULT_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@dataclass(frozen=True)
class WorkerPlan:
    """Everything one worker process runs, resolved by the parent."""

    index: int
    functions: tuple[FunctionSpec, ...]  # each with only the SQS events this worker polls
    queues: tuple[QueueSpec, ...]
    sqs: SqsTarget
    environment: dict[str, str]
    region: str
    wait_seconds: int
    correlation_keys: tuple[str, ...]
    websocket_endpoint: str | None
    reload: bool
    shutdown_timeout: float
    log_level: int
    log_format: str
    logger_levels: dict[str, int]  # the parent's own settings (e.g. a quiet botocore)


def share(total: int, workers: int, index: int) -> int:
    """Worker `index`'s part of `total` concurrent batches (0: it does not poll)."""
    return total // workers + (1 if index < total % workers else 0)


def plan_workers(
    count: int, functions: Mapping[str, FunctionSpec], **common: Any
) -> list[WorkerPlan]:
    """Split every enabled SQS event's MaximumConcurrency over `count` workers."""
    plans = []
    for index in range(count):
        specs = []
        for spec in functions.values():
            events = tuple(
                replace(event, maximum_concurrency=part)
                for event in spec.sqs_events
                if event.enabled and (part := share(event.maximum_concurrency, count, index))
            )
            if events:
                specs.append(replace(spec, sqs_events=events, api_events=(), schedule_events=()))
        if specs:
            plans.append(WorkerPlan(index=index, functions=tuple(specs), **common))
    return plans


def _root_log_format() -> str:
    for handler in logging.getLogger().handlers:
        fmt = getattr(handler.formatter, "_fmt", None)
        if fmt:
            return str(fmt)
    return DEFAULT_LOG_FORMAT


class WorkerProcesses:
    """The parent's handle on its workers: start them all, stop them all.

    Each worker has one pipe to the parent: it reports "ready" (or what stopped it)
    on it, and waits on it for "stop". The pipe is also how a worker learns that the
    parent is gone (EOF), which no shared Event could tell it."""

    def __init__(self, plans: list[WorkerPlan]) -> None:
        self.plans = plans
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[tuple[BaseProcess, Connection]] = []
        self._stopping = False

    @staticmethod
    def log_settings() -> dict[str, Any]:
        """The parent's logging, so a worker's lines read like the parent's."""
        loggers = logging.root.manager.loggerDict.items()
        return {
            "log_level": logging.getLogger().getEffectiveLevel(),
            "log_format": _root_log_format(),
            "logger_levels": {
                name: logger.level
                for name, logger in loggers
                if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET
            },
        }

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _ in self._workers if p.pid is not None]

    def start(self) -> None:
        """Start every worker and wait until each polls, or raise what stopped one."""
        for plan in self.plans:
            ours, theirs = self._context.Pipe()
            process: BaseProcess = self._context.Process(
                target=worker_main,
                args=(plan, theirs),
                name=f"local-runtime-worker-{plan.index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self._workers.append((process, ours))
        for started, pipe in self._workers:
            if not pipe.poll(START_TIMEOUT):
                raise RuntimeError(f"{started.name} did not start within {START_TIMEOUT:.0f} s")
            try:
                status = pipe.recv()
            except EOFError:
                started.join(1)
                status = f"it exited with code {started.exitcode}"
            if status != READY:
                raise RuntimeError(f"{started.name} failed to start: {status}")
        threading.Thread(target=self._watch, name="worker-watch", daemon=True).start()

    def _watch(self) -> None:
        """Say so when a worker dies on its own: its share of the polling is gone."""
        pending = {process.sentinel: process for process, _ in self._workers}
        while pending:
            for sentinel in multiprocessing.connection.wait(list(pending)):
                process = pending.pop(cast(int, sentinel))  # sentinels are fds
                if not self._stopping:
                    log.error(
                        "%s exited (code %s); its pollers are gone", process.name, process.exitcode
                    )

    def stop(self, timeout: float) -> None:
        """Ask every worker to stop; wait (bounded) for running invocations, then end."""
        self._stopping = True
        workers, self._workers = self._workers, []
        for _, pipe in workers:
            with contextlib.suppress(OSError):  # a worker already gone
                pipe.send(STOP)
        for process, pipe in workers:
            process.join(timeout + 5)
            if process.is_alive():
                log.warning("%s did not stop in time; terminating it", process.name)
                process.terminate()
                process.join(2)
            pipe.close()


class _StopRequested(Exception):
    pass


def _stop_requested(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested


def worker_main(plan: WorkerPlan, parent: Connection) -> None:
    """The worker process: poll until the parent says stop, or is gone."""
    # Ctrl-C reaches the whole process group, and the parent stops its workers itself;
    # SIGTERM sent to a worker alone stops it as "stop" would.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_requested)
    logging.basicConfig(level=plan.log_level, format=plan.log_format)
    for name, level in plan.logger_levels.items():
        logging.getLogger(name).setLevel(level)
    os.environ.clear()
    os.environ.update(plan.environment)
    try:
        in_flight = InFlight()
        functions = make_functions(
            plan.functions,
            in_flight,
            correlation_keys=plan.correlation_keys,
            websocket_endpoint=plan.websocket_endpoint,
        )
        for function in functions.values():
            function.code.handler()
        pollers = start_pollers(
            functions,
            {q.logical_id: q for q in plan.queues},
            plan.sqs,
            region=plan.region,
            wait_seconds=plan.wait_seconds,
        )
        reloader = Reloader(f.code for f in functions.values()) if plan.reload else None
        if reloader is not None:
            reloader.start()
    except BaseException as error:
        parent.send(f"{type(error).__name__}: {error}")
        raise
    parent.send(READY)
    try:
        parent.recv()  # STOP
    except EOFError:
        os._exit(1)  # the parent is gone (SIGKILL, crash): so is this worker, at once
    except _StopRequested:
        pass
    for poller in pollers:
        poller.stop_polling()
    if reloader is not None:
        reloader.stop()
    if not in_flight.wait_idle(plan.shutdown_timeout):
        log.warning("worker %d: %d invocation(s) still running", plan.index, in_flight.count)
    for poller in pollers:
        poller.join(timeout=2)
