"""PostgreSQL for a laptop: the server named by DATABASE_URL, or an embedded one.

The embedded server is pgserver's (PostgreSQL binaries shipped in a wheel). Its data
lives in a folder of the project, so orders survive a restart; several processes may
share it, and the last one out stops it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


@dataclass
class Database:
    url: str
    embedded: bool
    _server: Any = None

    def describe(self) -> str:
        if self.embedded:
            return f"embedded PostgreSQL (data in {self._server.pgdata})"
        return f"PostgreSQL at {_redact(self.url)}"

    def stop(self) -> None:
        """Stop the embedded server if this process started it (no-op otherwise)."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def open_database(data_dir: Path, url: str | None = None, *, min_connections: int = 0) -> Database:
    """The database at `url` (default: $DATABASE_URL), else an embedded one in `data_dir`
    that accepts at least `min_connections` at once (PostgreSQL's default is 100). A
    server of one's own is sized by its owner: `min_connections` applies to the embedded
    one only."""
    url = url or os.environ.get("DATABASE_URL")
    if url:
        return Database(url=url, embedded=False)
    database = _start_embedded(data_dir)
    # Asked only when something is asked: every CLI command opens the database.
    if not min_connections or max_connections(database.url) >= min_connections:
        return database
    with psycopg.connect(database.url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER SYSTEM SET max_connections = {}").format(sql.Literal(min_connections))
        )
    # The setting applies from the next start: stop the server (if no other process
    # holds it) and start it again. It stays in the data folder for the runs after.
    database.stop()
    return _start_embedded(data_dir)


def _start_embedded(data_dir: Path) -> Database:
    import pgserver  # imported here: only laptops without DATABASE_URL need it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    log.info("embedded PostgreSQL running in %s", data_dir)
    return Database(url=server.get_uri(), embedded=True, _server=server)


def max_connections(url: str) -> int:
    """How many connections the server at `url` accepts at once."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
    assert row is not None
    return int(row[0])


def _redact(url: str) -> str:
    """The URL without its password, for logs and banners."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in credentials else url
