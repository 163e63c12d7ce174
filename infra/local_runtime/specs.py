"""Plain, resolved descriptions of what the runtime will run (no intrinsics left)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LayerSpec:
    logical_id: str
    content_dir: Path

    @property
    def python_dir(self) -> Path:
        """Lambda puts a layer's python/ folder on sys.path (as /opt/python)."""
        return self.content_dir / "python"


@dataclass(frozen=True)
class ApiEventSpec:
    name: str
    path: str
    method: str  # upper case, or ANY
    rest_api: str  # logical id of the REST API (ServerlessRestApi when implicit)


@dataclass(frozen=True)
class SqsEventSpec:
    name: str
    queue_arn: str
    batch_size: int = 10
    batching_window: float = 0.0
    report_batch_item_failures: bool = False
    maximum_concurrency: int = 5
    enabled: bool = True


@dataclass(frozen=True)
class ScheduleEventSpec:
    name: str
    expression: str  # rate(...) or cron(...)
    enabled: bool = True
    input: Any = None  # a constant Input replaces the EventBridge event, as on AWS
    rule_name: str = ""


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    function_name: str
    arn: str
    code_dir: Path
    handler: str
    runtime: str = "python3.11"
    timeout: float = 3.0
    memory_mb: int = 128
    reserved_concurrency: int | None = None  # ReservedConcurrentExecutions
    environment: dict[str, str] = field(default_factory=dict)
    layers: tuple[LayerSpec, ...] = ()
    api_events: tuple[ApiEventSpec, ...] = ()
    sqs_events: tuple[SqsEventSpec, ...] = ()
    schedule_events: tuple[ScheduleEventSpec, ...] = ()


@dataclass(frozen=True)
class QueueSpec:
    logical_id: str
    name: str
    url: str
    arn: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class WebSocketApiSpec:
    logical_id: str
    api_id: str
    stage: str
    route_selection_expression: str
    routes: dict[str, str]  # route key -> function logical id
    # Routes whose integration's answer goes back to the client (a RouteResponse and
    # the route's RouteResponseSelectionExpression); the others are one-way.
    two_way_routes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RestApiSpec:
    logical_id: str
    api_id: str
    stage: str
    binary_media_types: tuple[str, ...] = ()
