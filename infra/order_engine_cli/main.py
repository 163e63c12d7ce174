"""The `order-engine` command."""

from __future__ import annotations

import click

from order_engine_cli.bench import bench
from order_engine_cli.demo import demo
from order_engine_cli.dlq import dlq
from order_engine_cli.keys import keys
from order_engine_cli.lab import lab
from order_engine_cli.options import database_url_option
from order_engine_cli.up import up


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="order-engine")
def cli() -> None:
    """order-engine: market orders for Solana DEXs, as serverless functions.

    \b
    Start here:
      order-engine up      run everything on this machine (HTTP :3000, WebSocket :3001)
      order-engine demo    place five orders at once and watch them move
      order-engine keys    create, list and revoke API keys
    """


@cli.command()
@database_url_option()
def migrate(database_url: str | None) -> None:
    """Apply the database migrations (safe to run twice, or concurrently)."""
    from order_engine_cli.database import migrated_database

    with migrated_database(database_url) as database:
        click.echo(f"migrations applied to {database.describe()}")


cli.add_command(up)
cli.add_command(demo)
cli.add_command(dlq)
cli.add_command(keys)
cli.add_command(bench)
cli.add_command(lab)
