"""Structured JSON logs with the order id as correlation id, through Powertools Logger.

Engine modules log with the standard `logging.getLogger(__name__)`; `setup_logging`
routes the whole `order_engine` tree through one Powertools JSON formatter, and
`order_context` stamps `order_id` on every line logged while an order is handled, so
`grep <order id>` finds its whole story across functions.

Log lines carry what clients sent (an order id, a token, an error quoting them), so
every line's text has its control characters escaped: a newline inside an id cannot
start a forged line of its own.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

SERVICE = "order-engine"

logger = Logger(service=SERVICE, level=os.environ.get("LOG_LEVEL", "INFO"))
_configured = False
# C0 (newline, carriage return, escape...), DEL and C1 (U+0085 is a newline to some readers).
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control_characters(text: str) -> str:
    """`text` on one line: control characters written as escapes (\\n, \\x1b, \\x85)."""
    return _CONTROL_CHARACTERS.sub(
        lambda match: _NAMED_ESCAPES.get(match.group(), f"\\x{ord(match.group()):02x}"), text
    )


def _escaping(make_record: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it when it is emitted
            return record
        escaped = escape_control_characters(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return record

    make.escapes_control_characters = True  # type: ignore[attr-defined]
    return make


def escape_control_characters_in_logs() -> None:
    """Every record this process logs from now on has its message (and so every field
    formatted into it) escaped. A record factory, not a filter or a formatter: the
    handlers belong to whoever runs the engine (Lambda, `order-engine up`)."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "escapes_control_characters", False):
        logging.setLogRecordFactory(_escaping(factory))


def wants_json_logs() -> bool:
    """JSON on Lambda (CloudWatch Logs Insights reads it), or when LOG_FORMAT=json;
    a terminal (`order-engine up`) keeps readable lines, whose invocation lines carry
    the order id as their correlation id."""
    return (
        bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) or os.environ.get("LOG_FORMAT") == "json"
    )


def setup_logging() -> None:
    global _configured
    escape_control_characters_in_logs()
    if not _configured and wants_json_logs():
        copy_config_to_registered_loggers(source_logger=logger, include={"order_engine"})
        _configured = True


@contextmanager
def order_context(order_id: UUID) -> Iterator[None]:
    """Every log line inside carries `order_id` (thread-safe: invocations run in parallel)."""
    logger.thread_safe_append_keys(order_id=str(order_id))
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(["order_id"])
