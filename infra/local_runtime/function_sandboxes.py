"""From resolved function specs to functions that run in sandboxes: each function's
environment, its sandbox limit, and the logging its sandboxes copy from the parent."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from local_runtime.functions import InFlight, LambdaFunction
from local_runtime.sandbox_process import SandboxPlan
from local_runtime.sandboxes import EmfSink, SandboxBudget, SandboxPool
from local_runtime.specs import FunctionSpec

DEFAULT_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Sandboxes in all per CPU when RuntimeOptions.max_sandboxes_total is 0, and cold
# starts at once per CPU (measured on two cores: docs/local-runtime.md, "Sandboxes").
SANDBOXES_PER_CPU = 24
COLD_STARTS_PER_CPU = 2


def sandbox_limit(spec: FunctionSpec, runtime_cap: int) -> int:
    """How many sandboxes a function may have: as many as it may run at once.

    ReservedConcurrentExecutions caps every invocation of it. A function invoked only
    by SQS runs at most the sum of its mappings' MaximumConcurrency at once. The
    runtime's cap bounds all of them (a function with an API has no other bound)."""
    limits = [runtime_cap]
    if spec.reserved_concurrency is not None:
        limits.append(spec.reserved_concurrency)
    sqs = [event for event in spec.sqs_events if event.enabled]
    if sqs and not spec.api_events and not spec.schedule_events:
        limits.append(sum(event.maximum_concurrency for event in sqs))
    return max(1, min(limits))


def runtime_budget(asked_total: int) -> SandboxBudget:
    """The runtime's budget of sandboxes: `asked_total` in all, or SANDBOXES_PER_CPU per
    CPU; COLD_STARTS_PER_CPU of them starting at once."""
    cpus = os.cpu_count() or 1
    total = asked_total if asked_total > 0 else SANDBOXES_PER_CPU * cpus
    return SandboxBudget(total, starting=COLD_STARTS_PER_CPU * cpus)


def _root_log_format() -> str:
    for handler in logging.getLogger().handlers:
        fmt = getattr(handler.formatter, "_fmt", None)
        if fmt:
            return str(fmt)
    return DEFAULT_LOG_FORMAT


def log_settings() -> dict[str, Any]:
    """The parent's logging, so a sandbox's lines read like the parent's."""
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


def make_functions(
    specs: Iterable[FunctionSpec],
    environments: Mapping[str, dict[str, str]],
    in_flight: InFlight,
    *,
    correlation_keys: Iterable[str],
    websocket_endpoint: str | None,
    channels: Mapping[str, str] | None = None,
    sqs_servers: Iterable[str] = (),
    runtime_cap: int,
    emf_sink: EmfSink | None = None,
    budget: SandboxBudget | None = None,
    bytecode_cache: Path | None = None,
) -> dict[str, LambdaFunction]:
    """Every function with its (not yet started) pool of sandboxes; with a `budget`,
    the pools share it (at most that many sandboxes in all); with a `bytecode_cache`,
    their sandboxes keep compiled modules there (sandbox_process.use_bytecode_cache)."""
    logging_now = log_settings()
    functions = {}
    for spec in specs:
        plan = SandboxPlan(
            spec=spec,
            environment=environments[spec.logical_id],
            websocket_endpoint=websocket_endpoint,
            channels=dict(channels or {}),
            sqs_servers=tuple(sqs_servers),
            **logging_now,
            bytecode_cache=None if bytecode_cache is None else str(bytecode_cache),
        )
        pool = SandboxPool(plan, sandbox_limit(spec, runtime_cap), emf_sink, budget)
        if budget is not None:
            budget.pools.append(pool)
        functions[spec.logical_id] = LambdaFunction(spec, pool, in_flight, correlation_keys)
    return functions
