"""A virtualenv of its own for an SQS server we run (LocalStack, MiniStack).

Such a server pins versions the project must not share: LocalStack needs Python >= 3.12,
and each MiniStack release pins botocore exactly, older than the one boto3 wants here.
So on first use the server gets a venv under the runtime's data folder, built from
its requirement and a constraints file (versions known to work), and rebuilt only when
those change.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class ServerInstallError(RuntimeError):
    """A server's venv could not be built (no suitable Python, or pip failed)."""


def _stamp(requirements: Sequence[str], constraints: Path) -> str:
    digest = hashlib.sha256(constraints.read_bytes() + " ".join(requirements).encode())
    return digest.hexdigest()[:16]


def ensure_venv(
    venv_dir: Path,
    *,
    base_python: Callable[[], str],
    requirements: Sequence[str],
    constraints: Path,
) -> Path:
    """The venv's python, building the venv first if it is missing or out of date.
    `base_python` is asked only when building; it raises ServerInstallError if none fits."""
    venv_dir = venv_dir.absolute()  # not resolve(): bin/python must stay the venv's link
    python = venv_dir / "bin" / "python"
    stamp_file = venv_dir / ".local-runtime-stamp"
    stamp = _stamp(requirements, constraints)
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    # A file lock, so two test sessions starting together build the venv only once.
    with (venv_dir.parent / f".{venv_dir.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
            return python
        base = base_python()
        log.warning("installing %s into %s (first use)", " ".join(requirements), venv_dir)
        if venv_dir.is_symlink():
            # A link to another checkout's venv (shared to save the build): that venv
            # is the other's, built from its constraints and under its lock, so build
            # ours here instead of rebuilding it through the link.
            venv_dir.unlink()
        shutil.rmtree(venv_dir, ignore_errors=True)
        _run([base, "-m", "venv", str(venv_dir)])
        _run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        _run(
            [str(python), "-m", "pip", "install", "--quiet", "-c", str(constraints), *requirements]
        )
        stamp_file.write_text(stamp)
        return python


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServerInstallError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
