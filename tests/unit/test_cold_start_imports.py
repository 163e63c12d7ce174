"""What a function's cold start loads: its handler's import is paid by every new
container (and every sandbox of the local runtime), so libraries and engine modules
it does not use stay out of it, and out of what its first invocation builds."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Each costs a cold start tens of milliseconds of CPU and serves no running code: the
# X-Ray SDK where tracing is off (~100 ms, its sampler building a botocore client), and
# Powertools' batch utility with the event classes and pydantic models it builds
# (40-80 ms), where consumers.process_batch does the job.
UNUSED = ("aws_xray_sdk", "aws_lambda_powertools.utilities.batch")


@pytest.mark.parametrize("handler", ["workers", "notifier", "websocket", "api"])
def test_a_handlers_import_loads_no_library_it_does_not_use(handler: str) -> None:
    _check_in_a_new_interpreter(handler, [], UNUSED)


# What each function builds of the engine on its first invocation (a market order's),
# and the engine modules it never uses, which its cold start must not import either.
ROUTER = "dex.router dex.venue dex.simulation"
FIRST_USE = {
    "workers": ("delivering_outbox store pipeline", "service accounts order_list sweeper watch"),
    "notifier": ("subscriptions notifier", f"pipeline store outbox service watch sweeper {ROUTER}"),
    "api": ("accounts orders", f"pipeline watch sweeper {ROUTER}"),
    "websocket": ("accounts orders sender", f"pipeline watch sweeper {ROUTER}"),
    "watcher": ("watch router", "pipeline service sweeper"),
    "sweeper": ("sweeper watch", f"pipeline service {ROUTER}"),
}


@pytest.mark.parametrize("handler", sorted(FIRST_USE))
def test_a_function_imports_only_the_engine_modules_it_uses(handler: str) -> None:
    parts = FIRST_USE[handler][0].split()
    unused = [f"order_engine.{name}" for name in FIRST_USE[handler][1].split()]
    _check_in_a_new_interpreter(handler, parts, unused)


def _check_in_a_new_interpreter(handler: str, parts: list[str], unused: Sequence[str]) -> None:
    """Import `handler`'s module as the function's cold start does, build `parts` of
    its engine (`engine().<part>`), then check that no module of `unused` is loaded."""
    check = (
        f"import {handler}, sys\n"
        "from order_engine.wiring import engine\n"
        f"for part in {parts!r}:\n"
        "    getattr(engine(), part)\n"
        f"loaded = [name for name in {list(unused)!r} if name in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    env = {
        "PATH": os.defpath,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "functions"), str(ROOT / "layers/engine/python")]
        ),
        "POWERTOOLS_TRACE_DISABLED": "true",  # what template.yaml sets unless Tracing=Active
        "AWS_LAMBDA_FUNCTION_NAME": f"{handler}-function",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        # Nothing listens there: the pool opens without waiting, and nothing is asked.
        "DATABASE_URL": "postgresql://127.0.0.1:1/none",
        "WEBSOCKET_MANAGEMENT_URL": "http://127.0.0.1:1/v1",
    }
    result = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
