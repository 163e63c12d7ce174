"""The stack a benchmark drives: an `order-engine up` it starts (and stops), or one
already running from this checkout."""

from __future__ import annotations

from collections.abc import Mapping

import click
from rich.console import Console

from order_engine_cli.project import DATA_DIR
from order_engine_cli.running import RunningStack, running_stacks
from order_engine_cli.up_process import UpFailed, UpProcess

READY_TIMEOUT = 300.0  # LocalStack's first start builds its venv: minutes, once
PROFILES = {"realistic": "1", "instant": "0"}  # profile: `up --latency-scale`


def start_stack(
    console: Console,
    *,
    sqs: str,
    profile: str,
    concurrency: int,
    env: Mapping[str, str],
) -> UpProcess:
    stack = UpProcess(
        [
            "--sqs",
            sqs,
            "--latency-scale",
            PROFILES[profile],
            "--concurrency",
            str(concurrency),
        ],
        log_dir=DATA_DIR / "logs",
        log_name="bench-up",
        env=env,
    )
    with console.status(f"starting `order-engine up --sqs {sqs}` (log: {stack.log_path})"):
        try:
            stack.start(READY_TIMEOUT)
        except UpFailed as error:
            raise click.ClickException(str(error)) from None
    return stack


def stop_stack(stack: UpProcess, console: Console) -> None:
    with console.status("stopping the stack (Ctrl-C)…"):
        code = stack.stop()
    if code not in (0, None):
        console.print(f"[yellow]the stack exited with {code}; its log: {stack.log_path}")


def running_stack(api_url: str) -> RunningStack | None:
    """The `order-engine up` serving `api_url`, if it runs from this checkout."""
    for running in running_stacks():
        if running.http.rstrip("/") == api_url.rstrip("/"):
            return running
    return None
