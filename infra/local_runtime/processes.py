"""Child processes the runtime starts (moto server, LocalStack) and must never leave behind.

Each child gets its own session (process group), so stopping it also stops whatever it
spawned; an atexit hook stops any child still running if the host exits without
calling stop().
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from local_runtime.parent_death import die_with_parent

log = logging.getLogger(__name__)

_running: set[ManagedProcess] = set()
_running_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it; a tiny race is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but alive
    return True


class ManagedProcess:
    """A subprocess in its own process group, with its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = log_path.open("ab")
        self._proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() reaches its children too
            preexec_fn=die_with_parent(),
        )
        self._stopped = False
        with _running_lock:
            _running.add(self)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def wait_http(self, url: str, timeout: float, *, ok_statuses: range = range(200, 500)) -> None:
        """Block until `url` answers with an accepted status, or raise with the log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                self.stop(keep_log=True)
                raise RuntimeError(
                    f"{self.name} exited with code {self._proc.returncode} while starting; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local URL)
                    if response.status in ok_statuses:
                        return
            except urllib.error.HTTPError as error:
                if error.code in ok_statuses:
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        self.stop(keep_log=True)
        raise TimeoutError(
            f"{self.name} did not answer {url} within {timeout:.0f} s; "
            f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0, *, keep_log: bool = False) -> None:
        """SIGTERM the whole group, then SIGKILL what is left after `timeout` seconds.
        The log goes too (one file per run would pile up), unless asked to keep it."""
        if self._stopped:
            return
        self._stopped = True
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
                self._signal_group(signal.SIGKILL)
                self._proc.wait(5)
        # Children that outlived their parent still carry its group id.
        self._signal_group(signal.SIGKILL)
        with _running_lock:
            _running.discard(self)
        self._log_file.close()
        if not keep_log:
            self.log_path.unlink(missing_ok=True)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)


@atexit.register
def _stop_leftovers() -> None:
    with _running_lock:
        leftovers = list(_running)
    for process in leftovers:
        process.stop(timeout=5)
