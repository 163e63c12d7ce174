"""Which `order-engine up` processes run from this checkout, and what they serve.

`up` starts moto on a free port, so other commands cannot guess the SQS endpoint.
Each `up` writes one small JSON file, .data/run/<pid>.json, once it is serving, and
removes it when it stops; `order-engine dlq` reads them. A file whose process is gone
(killed with SIGKILL) is ignored and removed. One file per process, rather than one
shared file, because test suites start their own `up`s next to yours.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from local_runtime.processes import pid_alive
from order_engine_cli.project import DATA_DIR

if TYPE_CHECKING:
    from local_runtime.runtime import LocalRuntime
    from order_engine_cli.postgres import Database

RUN_DIR = DATA_DIR / "run"


@dataclass(frozen=True)
class RunningStack:
    pid: int
    sqs: str | None  # the SQS endpoint URL; None: AWS's own endpoint
    region: str
    stack_name: str  # queue names start with "<stack_name>-"
    http: str
    # Only an embedded server's URL (a local socket, no password). A DATABASE_URL the
    # user gave stays in their environment, never in a file.
    database: str | None
    started_at: str

    def describe(self) -> str:
        return f"`order-engine up`, pid {self.pid}"


@contextlib.contextmanager
def announce_running(
    runtime: LocalRuntime, database: Database, run_dir: Path | None = None
) -> Iterator[RunningStack]:
    """Write this process's file while the block runs."""
    stack = RunningStack(
        pid=os.getpid(),
        sqs=runtime.sqs_endpoint,
        region=runtime.options.region,
        stack_name=runtime.options.stack_name,
        http=runtime.http_url,
        database=database.url if database.embedded else None,
        started_at=datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
    )
    run_dir = run_dir or RUN_DIR
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{stack.pid}.json"
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(asdict(stack), indent=2))
    partial.replace(path)  # readers never see half a file
    try:
        yield stack
    finally:
        path.unlink(missing_ok=True)


def running_stacks(run_dir: Path | None = None) -> list[RunningStack]:
    """The `up` processes alive now, oldest first; stale files are removed."""
    run_dir = run_dir or RUN_DIR
    found = []
    for path in sorted(run_dir.glob("*.json")) if run_dir.is_dir() else []:
        try:
            stack = RunningStack(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue  # being written, or not ours: leave it alone
        if pid_alive(stack.pid):
            found.append(stack)
        else:
            path.unlink(missing_ok=True)
    return sorted(found, key=lambda stack: stack.started_at)
