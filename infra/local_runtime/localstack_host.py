"""LocalStack run on the host, without Docker, in a virtualenv of its own.

LocalStack 2026.3.0 needs Python >= 3.12 (its code uses 3.12 syntax) while the project
may run on 3.11, so it cannot share our venv: on first use we build one (server_venv.py)
with the first Python >= 3.12 we find, pinned by `localstack_constraints.txt` (a set of
versions known to work; newer cbor2/pyOpenSSL/cryptography break it).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from local_runtime import server_venv
from local_runtime.processes import ManagedProcess, free_port
from local_runtime.server_venv import ServerInstallError

log = logging.getLogger(__name__)

LOCALSTACK_REQUIREMENT = "localstack-core[runtime]==2026.3.0"
# Twisted's TLS support imports service_identity, which localstack-core does not pull in.
EXTRA_REQUIREMENTS = ("service-identity",)
CONSTRAINTS = Path(__file__).with_name("localstack_constraints.txt")
_PATH_CANDIDATES = ("python3.13", "python3.12", "python3.14", "python3.15", "python3")


class LocalStackUnavailable(ServerInstallError):
    """No Python >= 3.12 to run LocalStack with."""


def _is_modern_python(executable: str) -> bool:
    # pyenv shims exist on PATH even for versions that are not selected; running the
    # candidate is the only reliable test.
    try:
        result = subprocess.run(
            [executable, "-c", "import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)"],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def find_python312() -> str | None:
    """A Python >= 3.12: this one, one on PATH, or one under pyenv; None if there is none."""
    if sys.version_info >= (3, 12):
        return sys.executable
    for name in _PATH_CANDIDATES:
        found = shutil.which(name)
        if found and _is_modern_python(found):
            return found
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for version_dir in sorted(glob.glob(str(pyenv_root / "versions" / "3.1[2-9]*")), reverse=True):
        candidate = Path(version_dir) / "bin" / "python3"
        if candidate.exists() and _is_modern_python(str(candidate)):
            return str(candidate)
    return None


def ensure_venv(venv_dir: Path) -> Path:
    """LocalStack's venv's python, building the venv first if it is missing or out of date."""
    return server_venv.ensure_venv(
        venv_dir,
        base_python=_python312_or_fail,
        requirements=(LOCALSTACK_REQUIREMENT, *EXTRA_REQUIREMENTS),
        constraints=CONSTRAINTS,
    )


def _python312_or_fail() -> str:
    found = find_python312()
    if found is None:
        raise LocalStackUnavailable(
            "LocalStack needs Python >= 3.12 and none was found on PATH or under "
            "~/.pyenv/versions; install one or choose another SQS backend"
        )
    return found


def start_localstack(
    venv_dir: Path, state_dir: Path, timeout: float = 90.0
) -> tuple[ManagedProcess, str]:
    """Start LocalStack (SQS only) on a free port; returns the process and its endpoint URL."""
    python = ensure_venv(venv_dir)
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "SERVICES": "sqs",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        # Queue URLs on 127.0.0.1 rather than *.localhost.localstack.cloud, which needs DNS.
        "LOCALSTACK_HOST": f"127.0.0.1:{port}",
        "SQS_ENDPOINT_STRATEGY": "off",
        # Keep its files in our cache folder, not in /tmp shared with other runs.
        "LOCALSTACK_VOLUME_DIR": str(state_dir / "volume"),
        "TMPDIR": str(state_dir / "tmp"),
    }
    # AWS_ENDPOINT_URL* of the caller must not leak into LocalStack's own clients, nor
    # the caller's PYTHONPATH into another interpreter's imports.
    for key in [k for k in env if k.startswith("AWS_ENDPOINT_URL") or k == "PYTHONPATH"]:
        del env[key]
    (state_dir / "tmp").mkdir(parents=True, exist_ok=True)
    process = ManagedProcess(
        "LocalStack",
        [str(python), "-m", "localstack.runtime.main"],
        env=env,
        log_path=state_dir / f"localstack-{port}.log",
        cwd=state_dir,
    )
    endpoint = f"http://127.0.0.1:{port}"
    process.wait_http(f"{endpoint}/_localstack/health", timeout, ok_statuses=range(200, 300))
    return process, endpoint
