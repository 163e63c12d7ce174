"""`order-engine keys`: create, list and revoke API keys (kept hashed in PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import click
from rich.console import Console
from rich.table import Table

from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts
from order_engine.database import Database
from order_engine.errors import RequestError
from order_engine_cli.database import migrated_database
from order_engine_cli.options import database_url_option

database_option = database_url_option()


@contextmanager
def accounts_on(database_url: str | None) -> Iterator[Accounts]:
    """The accounts of the CLI's database (migrated first: keys need 0002)."""
    with migrated_database(database_url) as migrated, Database(migrated.url) as database:
        yield Accounts(AccountStore(database))


@click.group()
def keys() -> None:
    """API keys: every HTTP request but /health, and every WebSocket connection, presents
    one (Authorization: Bearer <key>, or ?apiKey=<key> on the WebSocket)."""


@keys.command()
@click.argument("name")
@click.option("--account", help="The account the key acts for, created if needed [default: NAME].")
@click.option("-q", "--quiet", is_flag=True, help="Print only the key (for KEY=$(…)).")
@database_option
def create(name: str, account: str | None, quiet: bool, database_url: str | None) -> None:
    """Create a key named NAME and print it, once: only its hash is kept."""
    with accounts_on(database_url) as accounts:
        try:
            issued = accounts.create_key(name, account=account)
        except RequestError as exc:
            raise click.BadParameter(exc.message, param_hint=exc.field) from None
    if quiet:
        click.echo(issued.key)
        return
    info = issued.info
    click.echo(f"Created key {info.prefix} ({info.name}) for account {info.account_name!r}.")
    click.echo("It is shown this once and cannot be recovered; keep it secret:\n")
    click.echo(issued.key)


@keys.command(name="list")
@database_option
def list_keys(database_url: str | None) -> None:
    """List the keys (never the keys themselves: they are not stored)."""
    with accounts_on(database_url) as accounts:
        found = accounts.list_keys()
    console = Console()
    if not found:
        console.print("No API keys yet: [bold]order-engine keys create NAME[/]")
        return
    table = Table(title="API keys")
    for column in ("prefix", "name", "account", "created", "last used", "revoked"):
        table.add_column(column)
    for key in found:
        style = "dim" if key.revoked else None
        table.add_row(
            key.prefix,
            key.name,
            key.account_name,
            _when(key.created_at),
            _when(key.last_used_at),
            _when(key.revoked_at),
            style=style,
        )
    console.print(table)


@keys.command()
@click.argument("prefix")
@database_option
def revoke(prefix: str, database_url: str | None) -> None:
    """Revoke the key with this PREFIX (as `keys list` shows it); its requests get 401
    from now on and its open WebSocket connections receive nothing more."""
    with accounts_on(database_url) as accounts:
        try:
            revoked = accounts.revoke_key(prefix)
        except RequestError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(
        f"Revoked key {revoked.prefix} ({revoked.name}) of account {revoked.account_name!r}."
    )


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
