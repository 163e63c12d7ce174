"""`order-engine up`: the whole system on this machine, from template.yaml."""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from pathlib import Path

import click
from rich.console import Console
from rich.panel import Panel

from local_runtime.function_sandboxes import runtime_budget
from local_runtime.options import RuntimeOptions
from local_runtime.runtime import LocalRuntime
from order_engine_cli.database import migrated_database
from order_engine_cli.dev_key import DEV_KEY_FILE, DevKey, ensure_dev_key
from order_engine_cli.options import concurrency_option, database_url_option, sqs_option
from order_engine_cli.project import DATA_DIR, ROOT, TEMPLATE
from order_engine_cli.running import announce_running

# Connections one sandbox may hold: the engine's minimum, since `up` may run up to
# --concurrency sandboxes per function against a server that allows 100 in all.
SANDBOX_DB_POOL = 2
EXAMPLE_ORDER = '{"type":"market","tokenIn":"SOL","tokenOut":"USDC","amount":"1.5"}'


def banner(runtime: LocalRuntime, database: str, dev_key: DevKey | None = None) -> Panel:
    """Where everything is. The commands to try come after, unboxed (see `try_it`)."""
    http, ws = runtime.http_url, runtime.ws_url()
    text = (
        f"[bold]Dashboard[/]      {http}/  (in a browser, with the key below)\n"
        f"[bold]HTTP API[/]       {http}\n"
        f"[bold]WebSocket API[/]  {ws}\n"
        f"[bold]@connections[/]   {runtime.management_url()}\n"
        f"[bold]SQS[/]            {runtime.sqs.description if runtime.sqs else '?'}\n"
        f"[bold]PostgreSQL[/]     {database}\n"
        f"[bold]API key[/]        {_describe_key(dev_key)}"
    )
    return Panel(text, title="order-engine is up", expand=False)


def try_it(runtime: LocalRuntime, dev_key: DevKey | None) -> str:
    """Commands to copy and paste: plain text, never wrapped inside a box."""
    http, ws = runtime.http_url, runtime.ws_url()
    key = dev_key.key if dev_key else "$ORDER_ENGINE_API_KEY"
    return (
        "Place an order:\n"
        f"  curl -s -X POST {http}/api/orders/execute -H 'Content-Type: application/json' \\\n"
        f'       -H "Authorization: Bearer {key}" \\\n'
        f"       -d '{EXAMPLE_ORDER}'\n"
        "Watch it (use the orderId from the answer):\n"
        f'  .venv/bin/python -m websockets "{ws}?orderId=ORDER_ID&apiKey={key}"\n'
        "Or watch five at once:\n"
        f"  .venv/bin/order-engine demo --api {http}\n\n"
        "Ctrl-C stops everything; orders in flight stay on their queues."
    )


def _describe_key(dev_key: DevKey | None) -> str:
    if dev_key is None:
        return (
            "this database has keys, none saved here: "
            "[bold]order-engine keys create NAME[/], then export ORDER_ENGINE_API_KEY"
        )
    path = dev_key.path.relative_to(ROOT) if dev_key.path.is_relative_to(ROOT) else dev_key.path
    made = "new, " if dev_key.created else ""
    return f"{dev_key.key}\n               ({made}account local-dev, saved in {path})"


def _connections_needed() -> int:
    """What the embedded PostgreSQL must accept: every sandbox the runtime may have at
    once (its budget) with a full pool, and room for the CLI and psql beside them.
    PostgreSQL's default is 100 connections: 48 sandboxes with 2 each come within 4 of
    it (a burst at concurrency 100 saw 102 server processes, its own included), and a
    sandbox refused a connection fails its whole batch ("too many clients")."""
    pool = int(os.environ.get("DB_POOL_MAX") or SANDBOX_DB_POOL)
    return runtime_budget(0).total * pool + 20


def _pool_env() -> dict[str, str]:
    """DB_POOL_MAX for each sandbox, unless the environment sets it.

    A sandbox runs one invocation at a time, as a Lambda container does, but there are
    many: every function may have up to --concurrency of them, each with its own pool,
    which opens one connection and a second only when a batch's records query at once."""
    if os.environ.get("DB_POOL_MAX"):
        return {}
    return {"DB_POOL_MAX": str(SANDBOX_DB_POOL)}


@click.command()
@sqs_option()
@click.option("--http-port", default=3000, show_default=True, help="HTTP API port (0: any).")
@click.option("--ws-port", default=3001, show_default=True, help="WebSocket API port (0: any).")
@database_url_option()
@click.option(
    "--latency-scale",
    default="1",
    show_default=True,
    help="Scale of the simulated DEX delays: 1 realistic, 0 instant.",
)
@concurrency_option()
@click.option(
    "--schedule-speed",
    default=1.0,
    show_default=True,
    help="Run schedules faster: 60 fires rate(1 minute) every second.",
)
@click.option("--reload", is_flag=True, help="Run changed code on the next invocation.")
@click.option(
    "--template",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=TEMPLATE,
    show_default=True,
    help="The SAM template to run.",
)
@click.option(
    "--dev-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEV_KEY_FILE,
    envvar="ORDER_ENGINE_DEV_KEY_FILE",
    show_default=True,
    help="Where the local development key is saved (made on a database without keys) "
    "[env: ORDER_ENGINE_DEV_KEY_FILE].",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every invocation's details.")
def up(
    sqs: str,
    http_port: int,
    ws_port: int,
    database_url: str | None,
    latency_scale: str,
    concurrency: int,
    schedule_speed: float,
    reload: bool,
    template: Path,
    dev_key_file: Path,
    verbose: bool,
) -> None:
    """Run the whole system on this machine: both APIs, the queues' pollers and the
    schedules, from template.yaml, with no Docker."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if not verbose:  # pgserver logs every initdb/pg_ctl line it runs
        logging.getLogger("pgserver").setLevel(logging.WARNING)
    console = Console()
    with ExitStack() as stack:
        with console.status("starting PostgreSQL and applying migrations…"):
            database = stack.enter_context(
                migrated_database(database_url, min_connections=_connections_needed())
            )
            dev_key = ensure_dev_key(database.url, dev_key_file)
        options = RuntimeOptions(
            sqs=sqs,
            http_port=http_port,
            ws_port=ws_port,
            parameters={
                "DatabaseUrl": database.url,
                "DexLatencyScale": latency_scale,
                "MaximumConcurrency": str(concurrency),
            },
            extra_env=_pool_env(),
            correlation_keys=("orderId",),
            reload=reload,
            max_sandboxes=concurrency,
            schedule_speed=schedule_speed,
            data_dir=DATA_DIR,
            announce=False,  # the banner below says it all
        )
        runtime = LocalRuntime(template, options)
        with console.status(f"starting SQS ({sqs}) and the functions…"):
            runtime.start()
        console.print(banner(runtime, database.describe(), dev_key))
        click.echo(try_it(runtime, dev_key))
        # .data/run/<pid>.json tells `order-engine dlq` where this SQS is (moto's port).
        stack.enter_context(announce_running(runtime, database))
        runtime.run_forever()  # until Ctrl-C; then the database stops too
    console.print("stopped.")
