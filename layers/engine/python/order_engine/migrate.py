"""The migration runner: numbered .sql files, applied once each, in order.

    python -m order_engine.migrate            # migrates $DATABASE_URL

Files in the order_engine.migrations package are named `NNNN_description.sql`. Each one
runs in its own transaction together with its schema_migrations row, so a migration
is either applied and recorded or neither. Several processes may run the runner at
once (every Lambda cold start, a deploy hook, the local runtime): a session advisory
lock, taken *before* schema_migrations is read, makes them queue up, and the later
ones find nothing left to do.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import psycopg

from order_engine.errors import InfrastructureError

log = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "order_engine.migrations"
# Any fixed 64-bit number works; every runner of this schema must use the same one.
# (0x6F72646572 spells "order".)
ADVISORY_LOCK_KEY = 0x6F72646572
_FILENAME = re.compile(r"^(\d{4})_(\w+)\.sql$")

# The runner's own bookkeeping: it must exist before the first migration is read.
_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(package: str = MIGRATIONS_PACKAGE) -> list[Migration]:
    """The package's migrations, sorted by version; a duplicate version is an error."""
    found: dict[int, Migration] = {}
    for entry in resources.files(package).iterdir():
        match = _FILENAME.match(entry.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migrations have version {version}: {entry.name}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[version] for version in sorted(found)]


def migrate(url: str, migrations: Sequence[Migration] | None = None) -> list[int]:
    """Apply the migrations `url` lacks; return the versions applied by this call."""
    wanted = load_migrations() if migrations is None else sorted(migrations, key=_version)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            # Session-level, so it spans the per-migration transactions below; it is
            # released when the connection closes, even if this process dies.
            conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
            conn.execute(_BOOTSTRAP)
            applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
            done: list[int] = []
            for migration in wanted:
                if migration.version in applied:
                    continue
                with conn.transaction():
                    # No parameters: psycopg sends the file as one simple query, so a
                    # file may hold many statements.
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                log.info("applied migration %04d_%s", migration.version, migration.name)
                done.append(migration.version)
            return done
    except psycopg.OperationalError as exc:
        raise InfrastructureError(f"cannot migrate the database: {exc}") from exc


def _version(migration: Migration) -> int:
    return migration.version


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    applied = migrate(url)
    print(f"applied {applied}" if applied else "the database is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
