"""Inside a sandbox: one function's process, as a Lambda execution environment is.

The runtime starts it through multiprocessing's fork server (sandboxes.py) with a
`SandboxPlan`. It takes exactly the plan's environment, puts the function's CodeUri
first on `sys.path` (as /var/task) and its layers' python/ folders after it (as
/opt/python), imports the handler (the init phase) and says so. Then it serves one
invocation at a time: it receives `(request_id, event, timeout)` on its pipe, calls the
handler with a context whose deadline is the invocation's, and sends back one reply:

    ("ok", value as JSON text) | ("error", error type, message, traceback text)

wrapped as `("emf", [line, ...], reply)` when the function printed CloudWatch EMF lines
(JSON lines that start with `{"_aws"`) since its last reply: stdout is teed, every line
still reaches the runtime's stdout as it would reach CloudWatch Logs, and only the EMF
ones are kept (a prefix test per line; they are parsed by the runtime, emf_metrics.py).
One message per invocation either way, pickled by `pickle` itself (multiprocessing's
ForkingPickler copies the copyreg dispatch table at every message, for the file
descriptors it can also carry, which a reply never holds).

The value is serialized as Lambda's Python runtime serializes it (JSON, Decimals as
numbers), so a value Lambda could not return fails here too, as Runtime.MarshalError.

Nothing but that pipe connects it to the runtime. It ends when the runtime closes the
pipe, or, if the runtime dies while a handler runs, within a second of that (the fork
server, its parent, ends with the runtime).

The fork server imports this module first (sandboxes.SANDBOX_PRELOAD), and that import
keeps the runtime's `__main__` out of every sandbox (`keep_runtime_main_out`).
"""

from __future__ import annotations

import decimal
import importlib.util
import io
import json
import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing import spawn
from multiprocessing.connection import Connection
from typing import Any, TextIO

from local_runtime.asgi_channel import route_through_channels
from local_runtime.chalice_support import prepare_handler
from local_runtime.function_code import load_handler
from local_runtime.kept_alive_http import route_sqs_over_kept_alive
from local_runtime.lambda_context import LambdaContext
from local_runtime.specs import FunctionSpec

READY = "ready"
OK, ERROR = "ok", "error"
EMF = "emf"
EMF_PREFIX = '{"_aws"'
NOT_EMF = "\x00"  # the start of a line that is not EMF, in EmfTee
PARENT_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class SandboxPlan:
    """Everything a sandbox needs, resolved by the parent (picklable)."""

    spec: FunctionSpec
    environment: dict[str, str]  # exactly the function's environment
    websocket_endpoint: str | None
    # Gateways' origins (scheme://host:port) and the Unix sockets on which they answer
    # this sandbox's @connections calls (asgi_channel.py).
    channels: dict[str, str]
    # Origins of the runtime's SQS server, whose requests from this sandbox go over
    # kept-alive http.client connections (kept_alive_http.py).
    sqs_servers: tuple[str, ...]
    log_level: int
    log_format: str
    logger_levels: dict[str, int]  # the parent's own settings (e.g. a quiet botocore)
    # Where the sandbox keeps the bytecode it compiles (`use_bytecode_cache`); None:
    # wherever the interpreter's own settings say, if anywhere.
    bytecode_cache: str | None = None


class EmfTee(io.TextIOBase):
    """sys.stdout as the function sees it: everything written goes on to `target`;
    whole lines that start with EMF_PREFIX are also kept until `take()`."""

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._partial = ""
        self._lines: list[str] = []
        self._lock = threading.Lock()  # a batch's records print from several threads

    def write(self, text: str) -> int:
        self._target.write(text)
        with self._lock:
            if self._partial == NOT_EMF and "\n" not in text:
                return len(text)  # more of a line that is not EMF
            *whole, partial = (self._partial + text).split("\n")
            self._lines.extend(line for line in whole if line.startswith(EMF_PREFIX))
            # A line that cannot be EMF is not kept whole (output without newlines could
            # be any size); NOT_EMF stands for it until its newline.
            maybe_emf = partial.startswith(EMF_PREFIX) or EMF_PREFIX.startswith(partial)
            self._partial = partial if maybe_emf else NOT_EMF
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def writable(self) -> bool:
        return True

    # What code that hands stdout on (to a subprocess, faulthandler) asks of it.
    def fileno(self) -> int:
        return self._target.fileno()

    def isatty(self) -> bool:
        return self._target.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._target.encoding

    def take(self) -> list[str]:
        with self._lock:
            lines, self._lines = self._lines, []
        return lines


def _exit_with_parent(parent_pid: int) -> None:
    """A handler may be running when the runtime is SIGKILLed: no pipe read would notice,
    so a watcher does (this process is adopted by another when its parent ends), and
    ends the sandbox as Lambda ends an environment it abandons."""
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent_pid:
            os._exit(1)


def _reply_to(handler: Any, request: tuple[str, Any, float], plan: SandboxPlan) -> tuple[Any, ...]:
    request_id, event, timeout = request
    context = LambdaContext(
        function_name=plan.spec.function_name,
        invoked_function_arn=plan.spec.arn,
        memory_limit_in_mb=plan.spec.memory_mb,
        timeout_seconds=timeout,
        aws_request_id=request_id,
    )
    try:
        value = handler(event, context)
    except Exception as error:
        text = "".join(traceback.format_exception(error)).rstrip()
        return (ERROR, type(error).__name__, str(error), text)
    try:
        return (OK, _LAMBDA_JSON.encode(value))
    except (TypeError, ValueError) as error:
        return (ERROR, "Runtime.MarshalError", f"Unable to marshal response: {error}", "")


def _decimal_as_number(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json.dumps(value, default=_decimal_as_number), without building the encoder at every
# reply (json.dumps reuses its own only when called with no options).
_LAMBDA_JSON = json.JSONEncoder(default=_decimal_as_number)


def keep_runtime_main_out() -> None:
    """A process of the fork server first re-runs its starter's `__main__` (as
    `__mp_main__`, multiprocessing's `prepare`), so that a target defined there could be
    unpickled. A sandbox's target and plan live in this module; the runtime's `__main__`
    is of no use to it, and under `order-engine up` it is the whole CLI (click, rich,
    the engine and its X-Ray client): 0.4-0.5 s of CPU at every cold start, measured
    as a fifth of the sandboxes' CPU in a burst, and modules of the function's own
    layers imported before its `sys.path` is set.

    `prepare` runs only in a child of the fork server or of `spawn`, never in the
    process that imports this module to start sandboxes, and a `spawn` child is a new
    interpreter that has not imported it: so this reaches the fork server's children
    only, all of them sandboxes (the runtime starts nothing else from it)."""
    spawn._fixup_main_from_name = _keep_main  # type: ignore[attr-defined]
    spawn._fixup_main_from_path = _keep_main  # type: ignore[attr-defined]


def _keep_main(_main: str) -> None:
    return None


keep_runtime_main_out()


def use_bytecode_cache(folder: str) -> None:
    """Keep compiled modules under `folder` (sys.pycache_prefix), whatever
    PYTHONDONTWRITEBYTECODE says: that variable (set where source trees must stay free
    of __pycache__ folders, as on this project's machines) otherwise leaves every cold
    start to compile the function's code and layers from source again: 71-73 ms of CPU
    to import one of this project's handlers, against 40-42 ms with bytecode (best of 8).
    A prefix writes nothing beside the sources either. Modules the fork server preloaded are
    already imported; the few others a sandbox imports are compiled into the folder once.
    Bytecode is checked against its source's mtime and size as usual (the reloader
    removes it on a change: `cached_bytecode`)."""
    sys.pycache_prefix = folder
    sys.dont_write_bytecode = False


def cached_bytecode(source: str, folder: str) -> str:
    """The bytecode of `source` (an absolute path) under a `use_bytecode_cache` folder,
    named as importlib names it there (its folder's path inside the cache)."""
    name = os.path.basename(importlib.util.cache_from_source(source))
    return os.path.join(folder, os.path.dirname(source).lstrip(os.sep), name)


def sandbox_main(plan: SandboxPlan, parent: Connection) -> None:
    # Ctrl-C reaches the whole process group; the runtime stops its sandboxes itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    logging.basicConfig(level=plan.log_level, format=plan.log_format)
    for name, level in plan.logger_levels.items():
        logging.getLogger(name).setLevel(level)
    os.environ.clear()
    os.environ.update(plan.environment)
    time.tzset()  # TZ is one of the Lambda variables
    if plan.bytecode_cache is not None:
        use_bytecode_cache(plan.bytecode_cache)
    stdout = EmfTee(sys.stdout)
    sys.stdout = stdout
    route_through_channels(plan.channels)
    route_sqs_over_kept_alive(plan.sqs_servers)
    try:
        handler = load_handler(plan.spec)
        prepare_handler(handler, plan.websocket_endpoint)
    except BaseException as error:
        parent.send((ERROR, type(error).__name__, str(error), ""))
        return
    parent.send((READY,))
    while True:
        try:
            request = parent.recv()
        except (EOFError, OSError):
            return
        if request is None:  # the parent retires this sandbox
            return
        reply = _reply_to(handler, request, plan)
        emf_lines = stdout.take()
        if emf_lines:
            reply = (EMF, emf_lines, reply)
        try:
            parent.send_bytes(pickle.dumps(reply, pickle.HIGHEST_PROTOCOL))
        except OSError:  # the parent is gone
            return
