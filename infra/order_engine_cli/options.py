"""The options several commands share, written once: what they mean, their environment
variable and their help."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from local_runtime.sqs_backends import DEFAULT_BACKEND

F = TypeVar("F", bound=Callable[..., Any])

SQS_BACKENDS = (
    "ministack (a local MiniStack server, installed into its own venv on first use), moto "
    "(a local moto server; its receives slow down as a backlog grows), localstack "
    "(LocalStack on this host, installed on first use; Python >= 3.12), aws, or an "
    "endpoint URL"
)


def sqs_option(
    *, default: str = DEFAULT_BACKEND, what: str = "SQS backend", note: str = ""
) -> Callable[[F], F]:
    """--sqs: the SQS a stack runs on (`up`'s, or the one a command starts `up` with)."""
    return click.option(
        "--sqs",
        default=default,
        show_default=True,
        help=f"{what}: {SQS_BACKENDS}.{' ' + note if note else ''}",
    )


def database_url_option(
    help: str = "PostgreSQL URL [env: DATABASE_URL]; unset: the embedded server in .data/.",
) -> Callable[[F], F]:
    """--database-url, from $DATABASE_URL; unset means the embedded server."""
    return click.option("--database-url", envvar="DATABASE_URL", default=None, help=help)


def api_key_option() -> Callable[[F], F]:
    """--api-key, from $ORDER_ENGINE_API_KEY; the caller falls back to the saved dev key."""
    return click.option(
        "--api-key",
        envvar="ORDER_ENGINE_API_KEY",
        default=None,
        help="API key [env: ORDER_ENGINE_API_KEY]; unset: the development key "
        "`order-engine up` saved in .data/dev-api-key.",
    )


def concurrency_option(*names: str) -> Callable[[F], F]:
    """`up --concurrency`: concurrent invocations per queue (`names` for a command that
    passes it on to the `up` it starts)."""
    return click.option(
        *(names or ("--concurrency",)),
        default=10,
        show_default=True,
        type=click.IntRange(2, 1000),
        help="Concurrent invocations per queue (ScalingConfig.MaximumConcurrency), and the "
        "most sandbox processes any one function may have.",
    )
