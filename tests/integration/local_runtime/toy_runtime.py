"""Helpers for running the toy SAM app (tests/fixtures/toy_app) on the local runtime.

Handlers write what they saw to a JSON-lines file through the toy layer (`toylib`);
`Records` reads it back.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_runtime import LocalRuntime, RuntimeOptions
from tests.support.stack import TEST_SQS

ROOT = Path(__file__).resolve().parents[3]
TOY_APP = ROOT / "tests" / "fixtures" / "toy_app"
IDLE_TIMEOUT = 4.0


def copy_toy_app(destination: Path) -> Path:
    shutil.copytree(TOY_APP, destination, ignore=shutil.ignore_patterns("__pycache__"))
    return destination / "template.yaml"


@dataclass
class Records:
    path: Path

    def all(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        # Only whole lines: a handler (a thread, or a worker process) may be halfway
        # through writing the last one.
        complete = self.path.read_text().split("\n")[:-1]
        lines = [json.loads(line) for line in complete if line]
        return [r for r in lines if kind is None or r["kind"] == kind]

    def wait_for(
        self,
        kind: str,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        count: int = 1,
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.all(kind) if predicate(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def toy_options(records_file: Path, **overrides: Any) -> RuntimeOptions:
    options = RuntimeOptions(
        http_port=0,
        ws_port=0,
        sqs=TEST_SQS,
        extra_env={"TOY_RECORD_FILE": str(records_file)},
        schedule_speed=60,  # rate(1 minute) fires every second
        idle_timeout=IDLE_TIMEOUT,
        correlation_keys=("orderId",),
        poll_wait_seconds=2,
        shutdown_timeout=5,
        data_dir=ROOT / ".data",
    )
    for key, value in overrides.items():
        setattr(options, key, value)
    return options


@contextmanager
def running_toy_app(folder: Path, records_file: Path, **overrides: Any) -> Iterator[LocalRuntime]:
    """A fresh copy of the toy app in `folder`, running with `toy_options`."""
    template = copy_toy_app(folder / "app")
    with LocalRuntime(template, toy_options(records_file, **overrides)) as running:
        yield running


def batches_with(records: Records, marker: str) -> list[dict[str, Any]]:
    """The batches the toy SQS handler recorded with a message carrying `marker`."""
    return [r for r in records.all("batch") if any(marker in body for body in r["bodies"])]
