"""The `context` object Lambda hands to a Python handler, with the same attribute names."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# (pid, function version) -> the log stream of this sandbox. Lambda writes an execution
# environment's invocations to one stream, named when the environment starts; a
# sandbox is forked from a process that may have imported this module, hence the pid.
_streams: dict[tuple[int, str], str] = {}


def _log_stream_name(function_version: str) -> str:
    key = (os.getpid(), function_version)
    if key not in _streams:
        day = datetime.now(UTC).strftime("%Y/%m/%d")
        _streams[key] = f"{day}/[{function_version}]{uuid.uuid4().hex}"
    return _streams[key]


@dataclass
class LambdaContext:
    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    identity: Any = None
    client_context: Any = None
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = _log_stream_name(self.function_version)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before this invocation is reported as timed out."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))
