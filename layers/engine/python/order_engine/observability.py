"""Structured JSON logs with the order id as correlation id, through Powertools Logger.

Engine modules log with the standard `logging.getLogger(__name__)`; `setup_logging`
routes the whole `order_engine` tree through one Powertools JSON formatter, and
`order_context` stamps `order_id` on every line logged while an order is handled, so
`grep <order id>` finds its whole story across functions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

SERVICE = "order-engine"

logger = Logger(service=SERVICE, level=os.environ.get("LOG_LEVEL", "INFO"))
_configured = False


def wants_json_logs() -> bool:
    """JSON on Lambda (CloudWatch Logs Insights reads it), or when LOG_FORMAT=json;
    a terminal (`order-engine up`) keeps readable lines, whose invocation lines carry
    the order id as their correlation id."""
    return (
        bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) or os.environ.get("LOG_FORMAT") == "json"
    )


def setup_logging() -> None:
    global _configured
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
