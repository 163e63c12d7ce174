"""MiniStack run on the host, without Docker, in a virtualenv of its own.

MiniStack installs from PyPI on Python 3.11, but each release pins botocore exactly
(1.5.33: botocore 1.43.106), older than the boto3 the project and its functions use;
shared, that older botocore made a shutdown test of the runtime flaky. So it gets its
own venv (server_venv.py), built on first use with this Python and pinned by
`ministack_constraints.txt`.

It is served by uvicorn with httptools and uvloop rather than by `python -m ministack`,
which runs MiniStack's ASGI app (`ministack.app:app`, what its own detached mode hands to
an ASGI server) under hypercorn's pure-Python h11 and asyncio: at a steady 600 orders/min
HTTP handling was most of MiniStack's CPU, and this serving takes about a third less per
order (docs/benchmarks.md). The app is MiniStack's, with one change: a long poll sleeps
until a message arrives instead of looking at its queue every 100 ms
(ministack_app/ministack_long_polls.py). Every answer is MiniStack's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from local_runtime import server_venv
from local_runtime.processes import ManagedProcess, free_port

MINISTACK_REQUIREMENT = "ministack==1.5.33"
# The server it runs under (see the module's docstring); versions in the constraints.
SERVER_REQUIREMENTS = ("uvicorn", "httptools", "uvloop")
CONSTRAINTS = Path(__file__).with_name("ministack_constraints.txt")
# MiniStack's app with long polls answered when a message arrives (its module says why).
APP_FOLDER = Path(__file__).with_name("ministack_app")
APP = "ministack_long_polls:app"
# Seconds a stopping server waits for requests in flight before it drops them: none,
# for long polls would hold it up to 20 s, the runtime stops polling before it stops SQS,
# and what MiniStack holds is gone with it anyway (as `python -m ministack` exits at once).
SHUTDOWN_GRACE_SECONDS = 0


def ensure_venv(venv_dir: Path) -> Path:
    """MiniStack's venv's python, building the venv first if it is missing or out of date."""
    return server_venv.ensure_venv(
        venv_dir,
        base_python=lambda: sys.executable,
        requirements=(MINISTACK_REQUIREMENT, *SERVER_REQUIREMENTS),
        constraints=CONSTRAINTS,
    )


def start_ministack(
    venv_dir: Path, state_dir: Path, log_dir: Path, *, extra_env: dict[str, str]
) -> tuple[ManagedProcess, str]:
    """Start MiniStack (SQS only) on a free port; returns the process and its endpoint URL."""
    python = ensure_venv(venv_dir)
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **extra_env,
        "GATEWAY_PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        # Queue URLs on the address we call, as the other backends give them.
        "MINISTACK_HOST": "127.0.0.1",
        "SERVICES": "sqs",
        # Listeners it opens by default on fixed ports (IoT mTLS 8883, SFTP): two
        # runtimes side by side would fight over them, and nothing here uses them.
        "IOT_MTLS_ENABLED": "0",
        "SFTP_ENABLED": "0",
        # Its own log: warnings only.
        "LOG_LEVEL": "WARNING",
        # Its pid file goes to the temporary folder: ours, not /tmp shared by all runs.
        "TMPDIR": str(state_dir),
    }
    # The caller's PYTHONPATH must not leak into another venv's imports; the folder of
    # the app module, which imports only MiniStack, is all it gets.
    env["PYTHONPATH"] = str(APP_FOLDER)
    process = ManagedProcess(
        "MiniStack",
        [str(python), "-m", "uvicorn", APP, *server_options(port)],
        env=env,
        log_path=log_dir / f"ministack-{port}.log",
    )
    endpoint = f"http://127.0.0.1:{port}"
    process.wait_http(f"{endpoint}/_ministack/health", timeout=30, ok_statuses=range(200, 300))
    return process, endpoint


def server_options(port: int) -> list[str]:
    """uvicorn's command line for MiniStack on `port`, as `python -m ministack` serves it."""
    return [
        "--host", "127.0.0.1",
        "--port", str(port),
        "--http", "httptools",
        "--loop", "uvloop",
        # MiniStack's startup (its worker threads, the loop its handlers call back on)
        # runs in the ASGI lifespan: a failure there must stop the server, not be skipped.
        "--lifespan", "on",
        # An access log line per request costs CPU under load; MiniStack's own log stays.
        "--no-access-log",
        "--log-level", "warning",
        # MiniStack adds the Date AWS sends itself; a second one would be uvicorn's.
        "--no-date-header",
        "--no-server-header",
        # Nothing proxies to it: no X-Forwarded-* to read on every request.
        "--no-proxy-headers",
        "--timeout-keep-alive", "75",  # as MiniStack keeps its connections
        "--timeout-graceful-shutdown", str(SHUTDOWN_GRACE_SECONDS),
    ]  # fmt: skip
