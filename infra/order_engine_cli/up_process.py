"""`order-engine up` as a subprocess, as a user starts it: for the benchmark, and for the
tests that kill and restart a stack.

On free ports of 127.0.0.1, its output in a log file; ready when GET /health answers
200; stopped with SIGINT (Ctrl-C), so its own shutdown runs, and killed only if that
hangs (or on purpose, with `kill`).
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
from order_engine_cli.project import ROOT


class UpFailed(RuntimeError):
    """`up` exited, or did not become healthy in time."""


def up_command() -> list[str]:
    """How to run `order-engine` with this interpreter: the console script beside it."""
    script = Path(sys.executable).parent / "order-engine"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from order_engine_cli.main import cli; cli()"]


class UpProcess:
    """`order-engine up <args>` on free ports, logging to `<log_dir>/<log_name>-<port>.log`,
    with `env` over this process's environment."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        log_dir: Path,
        log_name: str = "up",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.http_port, self.ws_port = free_port(), free_port()
        self.argv = [
            *up_command(),
            "up",
            "--http-port",
            str(self.http_port),
            "--ws-port",
            str(self.ws_port),
            *args,
        ]
        self.env = {**os.environ, **(env or {})}
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{log_name}-{self.http_port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait until it is healthy; UpFailed (with its log) if it is not."""
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
                raise UpFailed(f"`order-engine up` exited:\n{self.log_tail()}")
            if _healthy(self.api_url):
                return
            time.sleep(0.2)
        self.stop()  # never leave it running behind a failed start
        raise UpFailed(f"`order-engine up` was not healthy after {timeout:.0f} s")

    def stop(self, timeout: float = 60.0) -> int | None:
        """Ctrl-C, and wait for a clean exit (killed only if it hangs); its exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> int:
        """SIGKILL: no handler runs, nothing is released, nothing is flushed."""
        assert self.process is not None, "not started"
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=30)

    def log_tail(self, chars: int = 4000) -> str:
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
