"""The database the CLI works on: $DATABASE_URL, or the embedded one under .data/."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from order_engine.migrate import migrate
from order_engine_cli.postgres import Database, open_database
from order_engine_cli.project import POSTGRES_DIR


@contextmanager
def migrated_database(url: str | None = None, *, min_connections: int = 0) -> Iterator[Database]:
    """Open (or start) the database and bring its schema up to date."""
    database = open_database(POSTGRES_DIR, url, min_connections=min_connections)
    try:
        migrate(database.url)
        yield database
    finally:
        database.stop()
