"""A stack for the benchmark: `order-engine up` as a subprocess, as a user starts it.

On free ports of 127.0.0.1, with the chosen SQS, latency scale and concurrency, its
output in a log file; ready when GET /health answers 200; stopped with SIGINT (Ctrl-C),
so its own shutdown runs and a stop is never a kill unless it hangs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from local_runtime.processes import free_port
from order_engine_cli.project import DATA_DIR, ROOT

READY_TIMEOUT = 300.0  # LocalStack's first start builds its venv: minutes, once


class StackFailed(RuntimeError):
    """The stack exited, or did not become healthy in time."""


def up_command() -> list[str]:
    """How to run `order-engine` with this interpreter: the console script beside it."""
    script = Path(sys.executable).parent / "order-engine"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from order_engine_cli.main import cli; cli()"]


class BenchStack:
    def __init__(
        self,
        *,
        sqs: str,
        latency_scale: str,
        concurrency: int,
        env: Mapping[str, str],
        extra_args: Sequence[str] = (),
        log_dir: Path = DATA_DIR / "logs",
    ) -> None:
        self.http_port, self.ws_port = free_port(), free_port()
        self.argv = [
            *up_command(),
            "up",
            "--sqs",
            sqs,
            "--http-port",
            str(self.http_port),
            "--ws-port",
            str(self.ws_port),
            "--latency-scale",
            latency_scale,
            "--concurrency",
            str(concurrency),
            *extra_args,
        ]
        self.env = {**os.environ, **env}
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"bench-up-{self.http_port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackFailed(f"`order-engine up` exited:\n{self.log_tail()}")
            if _healthy(self.api_url):
                return
            time.sleep(0.5)
        self.stop()
        raise StackFailed(f"`order-engine up` was not healthy after {timeout:.0f} s")

    def stop(self, timeout: float = 60.0) -> int | None:
        """Ctrl-C, and wait for a clean exit (killed only if it hangs)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False
