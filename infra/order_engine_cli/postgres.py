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


# The embedded server's settings beyond initdb's defaults, each for a measured reason.
# None of them trades durability: fsync, synchronous_commit and full_page_writes keep
# their defaults, so a committed transition survives a crash.
EMBEDDED_SETTINGS: dict[str, str] = {
    # Plan each prepared statement once per connection, not at every execution. psycopg
    # prepares what a connection runs (database.py); PostgreSQL then plans the first five
    # executions for their values ("custom" plans), and keeps doing so whenever the
    # one-size plan's estimate comes out dearer, as for every `id = ANY(%s)` (the
    # outbox's mark_sent, the notifier's order read: the generic estimate assumes ten
    # elements). Every statement here is a key or partial-index lookup whose best plan
    # does not depend on the values (the partial indexes' predicates are spelled with
    # literals, never parameters). Planning fell from about 6 % of the server's CPU to 3 %
    # (a rough count of the planner's functions in two profiles).
    "plan_cache_mode": "force_generic_plan",
    # The database lives in shared buffers and the page cache, on an SSD: a random page
    # costs about what a sequential one does (the default 4.0 models a spinning disk).
    # With 4.0 the tables that churn (connections, subscriptions: a row per order,
    # deleted minutes later) looked small enough by their statistics to be read whole:
    # every $disconnect, advance_cursor and due_deliveries scanned all their pages, dead
    # rows included, until autovacuum came by (4 % of the server's CPU in a profile).
    "random_page_cost": "1.1",
}


def open_database(data_dir: Path, url: str | None = None, *, min_connections: int = 0) -> Database:
    """The database at `url` (default: $DATABASE_URL), else an embedded one in `data_dir`
    with EMBEDDED_SETTINGS that accepts at least `min_connections` at once (PostgreSQL's
    default is 100). A server of one's own is sized and tuned by its owner:
    `min_connections` and the settings apply to the embedded one only."""
    url = url or os.environ.get("DATABASE_URL")
    if url:
        return Database(url=url, embedded=False)
    database = _start_embedded(data_dir)
    settings = dict(EMBEDDED_SETTINGS)
    if min_connections and max_connections(database.url) < min_connections:
        settings["max_connections"] = str(min_connections)
    if not configure(database.url, settings):
        return database
    # Some settings apply from the next start only: stop the server (if no other process
    # holds it) and start it again. They stay in the data folder for the runs after.
    database.stop()
    return _start_embedded(data_dir)


def configure(url: str, settings: dict[str, str]) -> bool:
    """Write each of `settings` that the server's postgresql.auto.conf does not already
    say (ALTER SYSTEM), and reload the configuration. True if a setting waits for a
    restart (max_connections, shared_buffers, ...)."""
    with psycopg.connect(url, autocommit=True) as admin:
        written: dict[str, str] = dict(
            admin.execute(
                "SELECT name, setting FROM pg_file_settings"
                " WHERE sourcefile LIKE '%/postgresql.auto.conf'"
            ).fetchall()
        )
        changed = {name: value for name, value in settings.items() if written.get(name) != value}
        for name, value in changed.items():
            admin.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
        if not changed:
            return False
        admin.execute("SELECT pg_reload_conf()")
        # Those the server reads only when it starts ("postmaster" context).
        return bool(
            admin.execute(
                "SELECT FROM pg_settings WHERE name = ANY(%s) AND context = 'postmaster'",
                (list(changed),),
            ).fetchall()
        )


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
