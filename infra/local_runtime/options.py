"""Everything a caller can choose about a local run, with the defaults `up` wants."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from local_runtime.sqs_backends import DEFAULT_BACKEND

if TYPE_CHECKING:
    from local_runtime.runtime import LocalRuntime

Hook = Callable[["LocalRuntime"], None]


@dataclass
class RuntimeOptions:
    host: str = "127.0.0.1"
    http_port: int = 3000  # 0: any free port
    ws_port: int = 3001  # first WebSocket API; the next ones take the following ports
    sqs: str = DEFAULT_BACKEND  # ministack | moto | localstack | aws | http(s)://endpoint
    region: str = "us-east-1"
    stack_name: str = "local"
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides
    # Variables for every function, applied after the template's (they win, no conflict):
    # how the caller passes DATABASE_URL and the like.
    extra_env: dict[str, str] = field(default_factory=dict)
    # Called with the runtime once SQS and the queues exist and the environment is
    # applied, before any function runs (migrations, seeding...); and after shutdown.
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    # JSON keys whose values are logged as the invocation's correlation id.
    correlation_keys: tuple[str, ...] = ()
    reload: bool = False  # re-import a function's code when its files change
    # Start one sandbox per function at start (each imports its handler), so import
    # errors stop the start and first calls are warm.
    preload: bool = True
    schedule_speed: float = 1.0  # 60: rate(1 minute) fires every second
    schedules: bool = True
    pollers: bool = True
    # At most this many sandboxes (processes) per function, whatever the template allows
    # (see function_sandboxes.sandbox_limit).
    max_sandboxes: int = 10
    # At most this many sandboxes in all, over every function: each is a process with
    # its own memory, clients and database connections. When they are all taken, a
    # function that needs one more takes the place of another function's idle one.
    # 0: SANDBOXES_PER_CPU for each CPU of this machine (see docs/local-runtime.md).
    max_sandboxes_total: int = 0
    idle_timeout: float = 600.0  # WebSocket idle timeout, seconds (AWS: 10 minutes)
    poll_wait_seconds: int = 20  # SQS long polling
    shutdown_timeout: float = 10.0  # how long running invocations may take to finish
    announce: bool = True  # print the SQS in use and the URLs to stderr (else: log them)
    data_dir: Path = field(default_factory=lambda: Path(".data"))  # logs, venvs, bytecode
