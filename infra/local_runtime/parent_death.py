"""Child processes that die with the runtime, however the runtime ends.

stop() and an atexit hook end the servers the runtime starts, but neither runs when
the runtime is SIGKILLed; a moto server left behind would hold the in-flight messages
and its port while the next run starts another. On Linux the kernel can send the child
a signal when its parent dies (prctl PR_SET_PDEATHSIG), which needs no cooperation from
the child's code. Elsewhere there is no such hook and nothing changes.

The signal is sent when the *thread* that started the child ends, not only the process:
start the runtime from a thread that lives as long as it does (the main thread does).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return getattr(libc, "prctl", None)


_PRCTL = _load_prctl()


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen that makes the child die (SIGKILL) with this
    process; None where the platform cannot do it."""
    if _PRCTL is None:
        return None
    parent = os.getpid()
    prctl = _PRCTL

    def arrange() -> None:  # runs in the child, between fork and exec: keep it tiny
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return arrange
