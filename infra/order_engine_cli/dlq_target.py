"""Where the dead-letter queues are: which SQS, which stack, and readable errors.

The endpoint comes from, in this order: --endpoint-url; $AWS_ENDPOINT_URL_SQS or
$AWS_ENDPOINT_URL (the variables boto3 and the functions use); the `order-engine up`
running in this checkout (.data/run/, see running.py). `--endpoint-url aws` means
AWS's own endpoint. Nothing found is an error that names the flag, never a guess.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import boto3
import click
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from click.core import ParameterSource

from local_runtime.sqs_backends import DUMMY_CREDENTIALS
from order_engine_cli import running
from order_engine_cli.dlq_queues import DeadLetterQueue, find_dead_letter_queues

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL")
DEFAULT_STACK = "local"
DEFAULT_REGION = "us-east-1"
# Fail fast when SQS is unreachable; read timeout above the 1 s long polls we use.
_CLIENT_CONFIG = Config(connect_timeout=3, read_timeout=15, retries={"max_attempts": 2})

F = TypeVar("F", bound=Callable[..., Any])


def sqs_options(command: F) -> F:
    """--endpoint-url, --region and --stack-name, shared by every dlq command."""
    options = [
        click.option(
            "--endpoint-url",
            envvar=list(ENDPOINT_VARIABLES),
            metavar="URL",
            help="SQS endpoint (moto, LocalStack), or `aws` for AWS's own "
            "[env: AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL; default: the running "
            "`order-engine up` of this checkout].",
        ),
        click.option(
            "--region",
            envvar=["AWS_REGION", "AWS_DEFAULT_REGION"],
            help=f"AWS region [env: AWS_REGION; default: {DEFAULT_REGION}].",
        ),
        click.option(
            "--stack-name",
            "--prefix",
            "stack_name",
            metavar="NAME",
            help="Stack whose queues to use: queue names start with NAME- "
            f"[default: {DEFAULT_STACK}, as `order-engine up` names them].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@dataclass
class Target:
    sqs: Any
    where: str  # "SQS at URL (from …)", for every message that names it
    stack_name: str
    database_url: str | None = None  # the embedded database of a running `up`, if any
    _dlqs: list[DeadLetterQueue] | None = field(default=None, repr=False)

    def dead_letter_queues(self) -> list[DeadLetterQueue]:
        if self._dlqs is None:
            with sqs_errors(self.where):
                self._dlqs = find_dead_letter_queues(self.sqs, f"{self.stack_name}-")
        if not self._dlqs:
            raise click.ClickException(
                f"no dead-letter queues for stack {self.stack_name!r} on {self.where}: "
                "no queue named "
                f"{self.stack_name}-… has a RedrivePolicy. Is --stack-name right?"
            )
        return self._dlqs

    def resolve(self, name: str) -> DeadLetterQueue:
        """A DLQ by its name, its source's name, or either without the stack prefix
        (`route`, `local-route`, `route-dlq` and `local-route-dlq` are one queue)."""
        wanted = {name, f"{self.stack_name}-{name}"}
        dlqs = self.dead_letter_queues()
        for dlq in dlqs:
            if dlq.names() & wanted:
                return dlq
        known = ", ".join(
            f"{dlq.name} (of {', '.join(s.name for s in dlq.sources)})" for dlq in dlqs
        )
        raise click.ClickException(
            f"no dead-letter queue {name!r} on {self.where}. Dead-letter queues: {known}"
        )


def connect(
    ctx: click.Context, endpoint_url: str | None, region: str | None, stack_name: str | None
) -> Target:
    source = ctx.get_parameter_source("endpoint_url")
    stack: running.RunningStack | None = None
    if endpoint_url and source is ParameterSource.ENVIRONMENT:
        variable = next(name for name in ENDPOINT_VARIABLES if os.environ.get(name))
        origin = f"${variable}"
    elif endpoint_url:
        origin = "--endpoint-url"
    else:
        stack = _running_stack()
        endpoint_url = stack.sqs or "aws"
        origin = stack.describe()
    url = None if endpoint_url.strip().lower() == "aws" else endpoint_url.strip().rstrip("/")
    region = region or (stack.region if stack else DEFAULT_REGION)
    where = f"SQS at {url or f'AWS ({region})'} (from {origin})"
    return Target(
        sqs=_client(url, region),
        where=where,
        stack_name=stack_name or (stack.stack_name if stack else DEFAULT_STACK),
        database_url=stack.database if stack else None,
    )


def _running_stack() -> running.RunningStack:
    stacks = running.running_stacks()
    if len(stacks) == 1:
        return stacks[0]
    if not stacks:
        raise click.UsageError(
            "where is SQS? No `order-engine up` is running in this checkout, and neither "
            "--endpoint-url nor $AWS_ENDPOINT_URL_SQS is set. Pass --endpoint-url URL "
            "(moto or LocalStack), or --endpoint-url aws."
        )
    listed = "\n".join(f"  --endpoint-url {s.sqs or 'aws'}   {s.describe()}" for s in stacks)
    raise click.UsageError(
        f"{len(stacks)} `order-engine up` are running in this checkout; choose one:\n{listed}"
    )


def _client(url: str | None, region: str) -> Any:
    session = boto3.session.Session(region_name=region)
    if url and session.get_credentials() is None:
        # Emulators accept any credentials; AWS itself gets the user's own.
        session = boto3.session.Session(
            region_name=region,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
    return session.client("sqs", endpoint_url=url, config=_CLIENT_CONFIG)


@contextmanager
def sqs_errors(where: str) -> Iterator[None]:
    """SQS failures as one readable line naming the endpoint, not a traceback."""
    try:
        yield
    except (BotoConnectionError, HTTPClientError) as error:
        raise click.ClickException(f"cannot reach {where}: {error}") from None
    except NoCredentialsError:
        raise click.ClickException(
            f"no AWS credentials for {where}: configure a profile or set AWS_ACCESS_KEY_ID"
        ) from None
    except ClientError as error:
        details = error.response.get("Error", {})
        raise click.ClickException(
            f"{where} refused {error.operation_name}: "
            f"{details.get('Code', '?')}: {details.get('Message', '')}"
        ) from None
