"""How worker processes share the SQS event source mappings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local_runtime.specs import ApiEventSpec, FunctionSpec, SqsEventSpec
from local_runtime.sqs_backends import SqsTarget
from local_runtime.worker_processes import plan_workers

COMMON: dict[str, Any] = {
    "queues": (),
    "sqs": SqsTarget("http://127.0.0.1:1", "moto", "123456789012", emulated=True, kind="moto"),
    "environment": {},
    "region": "us-east-1",
    "wait_seconds": 1,
    "correlation_keys": (),
    "websocket_endpoint": None,
    "reload": False,
    "shutdown_timeout": 1.0,
    "log_level": 20,
    "log_format": "%(message)s",
    "logger_levels": {},
}


def function(name: str, *events: SqsEventSpec, api: bool = False) -> FunctionSpec:
    return FunctionSpec(
        logical_id=name,
        function_name=name,
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        code_dir=Path("."),
        handler="app.handler",
        sqs_events=events,
        api_events=(ApiEventSpec("Get", "/x", "GET", "ServerlessRestApi"),) if api else (),
    )


def concurrency_by_worker(functions: list[FunctionSpec], workers: int) -> list[dict[str, int]]:
    plans = plan_workers(workers, {f.logical_id: f for f in functions}, **COMMON)
    return [
        {
            f"{f.logical_id}/{e.name}": e.maximum_concurrency
            for f in plan.functions
            for e in f.sqs_events
        }
        for plan in plans
    ]


@pytest.mark.parametrize(
    ("concurrency", "workers", "shares"),
    [(10, 2, [5, 5]), (5, 2, [3, 2]), (2, 3, [1, 1]), (3, 1, [3])],
)
def test_each_mappings_concurrency_is_split_without_exceeding_it(
    concurrency: int, workers: int, shares: list[int]
) -> None:
    route = function("Route", SqsEventSpec("Queue", "arn:q", maximum_concurrency=concurrency))
    assert [plan["Route/Queue"] for plan in concurrency_by_worker([route], workers)] == shares


def test_workers_poll_only_enabled_sqs_events_and_serve_no_api() -> None:
    functions = [
        function("Api", api=True),
        function("Off", SqsEventSpec("Queue", "arn:off", enabled=False)),
        function("Work", SqsEventSpec("Queue", "arn:work", maximum_concurrency=4), api=True),
    ]
    plans = plan_workers(2, {f.logical_id: f for f in functions}, **COMMON)
    assert [[f.logical_id for f in plan.functions] for plan in plans] == [["Work"], ["Work"]]
    assert all(f.api_events == () for plan in plans for f in plan.functions)
