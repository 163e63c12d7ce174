"""The tests' PostgreSQL server: the one DATABASE_URL names, else the embedded one under
.data/postgres-test, which every process of a test run shares (pgserver counts the
processes holding it; the last one out stops it).

`pytest -n N` runs N workers at once, each with its stacks and their pools, so the
embedded server takes more connections than PostgreSQL's default 100.
"""

from __future__ import annotations

from pathlib import Path

from order_engine_cli.postgres import Database, open_database

DATA_DIR = Path(__file__).resolve().parents[2] / ".data" / "postgres-test"
# Four workers took up to about 130 server processes at once (the pools of end-to-end
# sandboxes, handler stacks, fault scenarios), three about 115: room for twice as many.
MAX_CONNECTIONS = 400


def open_test_server() -> Database:
    """The server, started (or joined) with room for MAX_CONNECTIONS."""
    return open_database(DATA_DIR, min_connections=MAX_CONNECTIONS)
