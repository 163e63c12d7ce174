"""Run an AWS SAM template on one machine, without Docker.

HTTP API (REST v1 events), WebSocket API with the @connections management API, SQS
event source mappings, schedules, and functions invoked in sandboxes of their own. See
docs/local-runtime.md.
"""

from __future__ import annotations

from local_runtime.options import RuntimeOptions
from local_runtime.runtime import LocalRuntime

__all__ = ["LocalRuntime", "RuntimeOptions"]
