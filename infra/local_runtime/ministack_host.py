"""MiniStack run on the host, without Docker, in a virtualenv of its own.

MiniStack installs from PyPI on Python 3.11, but each release pins botocore exactly
(1.5.33: botocore 1.43.106), older than the boto3 the project and its functions use;
shared, that older botocore made a shutdown test of the runtime flaky. So it gets its
own venv (server_venv.py), built on first use with this Python and pinned by
`ministack_constraints.txt`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from local_runtime import server_venv
from local_runtime.processes import ManagedProcess, free_port

MINISTACK_REQUIREMENT = "ministack==1.5.33"
CONSTRAINTS = Path(__file__).with_name("ministack_constraints.txt")


def ensure_venv(venv_dir: Path) -> Path:
    """MiniStack's venv's python, building the venv first if it is missing or out of date."""
    return server_venv.ensure_venv(
        venv_dir,
        base_python=lambda: sys.executable,
        requirements=(MINISTACK_REQUIREMENT,),
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
        # Its access log line per request costs CPU under load; warnings still show.
        "LOG_LEVEL": "WARNING",
        # Its pid file goes to the temporary folder: ours, not /tmp shared by all runs.
        "TMPDIR": str(state_dir),
    }
    # The caller's PYTHONPATH must not leak into another venv's imports.
    env.pop("PYTHONPATH", None)
    process = ManagedProcess(
        "MiniStack",
        [str(python), "-m", "ministack"],
        env=env,
        log_path=log_dir / f"ministack-{port}.log",
    )
    endpoint = f"http://127.0.0.1:{port}"
    process.wait_http(f"{endpoint}/_ministack/health", timeout=30, ok_statuses=range(200, 300))
    return process, endpoint
