"""Inside a sandbox: one function's process, as a Lambda execution environment is.

The runtime starts it through multiprocessing's fork server (sandboxes.py) with a
`SandboxPlan`. It takes exactly the plan's environment, puts the function's CodeUri
first on `sys.path` (as /var/task) and its layers' python/ folders after it (as
/opt/python), imports the handler (the init phase) and says so. Then it serves one
invocation at a time: it receives `(request_id, event, timeout)` on its pipe, calls the
handler with a context whose deadline is the invocation's, and sends back one reply:

    ("ok", value as JSON text) | ("error", error type, message, traceback text)

The value is serialized as Lambda's Python runtime serializes it (JSON, Decimals as
numbers), so a value Lambda could not return fails here too, as Runtime.MarshalError.

Nothing but that pipe connects it to the runtime. It ends when the runtime closes the
pipe, or, if the runtime dies while a handler runs, within a second of that (the fork
server, its parent, ends with the runtime).
"""

from __future__ import annotations

import decimal
import json
import logging
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from local_runtime.chalice_support import prepare_handler
from local_runtime.function_code import load_handler
from local_runtime.lambda_context import LambdaContext
from local_runtime.specs import FunctionSpec

READY = "ready"
OK, ERROR = "ok", "error"
PARENT_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class SandboxPlan:
    """Everything a sandbox needs, resolved by the parent (picklable)."""

    spec: FunctionSpec
    environment: dict[str, str]  # exactly the function's environment
    websocket_endpoint: str | None
    log_level: int
    log_format: str
    logger_levels: dict[str, int]  # the parent's own settings (e.g. a quiet botocore)


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
        return (OK, json.dumps(value, default=_decimal_as_number))
    except (TypeError, ValueError) as error:
        return (ERROR, "Runtime.MarshalError", f"Unable to marshal response: {error}", "")


def _decimal_as_number(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


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
        try:
            parent.send(_reply_to(handler, request, plan))
        except OSError:  # the parent is gone
            return
