"""Shared fixtures: a real PostgreSQL database for the whole test session.

With DATABASE_URL set, the tests create (and drop) a database of their own on that
server; without it, they start the embedded server under .data/. Either way each
session gets a fresh, migrated database, so runs never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from order_engine.migrate import migrate
from order_engine_cli.postgres import open_database

# The fault suite's seed option, marker and header line (tests/faults/seeds.py): hooks
# pytest must see before it prints the header, so they live in this conftest.
from tests.faults.seeds import (  # noqa: F401
    pytest_addoption,
    pytest_configure,
    pytest_report_header,
    pytest_terminal_summary,
)

ROOT = Path(__file__).resolve().parent.parent

# The CLI's rich tables fit themselves to the terminal; tests read them at one fixed,
# wide width, so a CI job without a terminal (80 columns) sees the same cells.
os.environ["COLUMNS"] = "200"


def _with_dbname(url: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, empty database (not yet migrated) for this test session."""
    database = open_database(ROOT / ".data" / "postgres-test", os.environ.get("DATABASE_URL"))
    name = f"order_engine_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database.url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_dbname(database.url, name)
    finally:
        with psycopg.connect(database.url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        database.stop()


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    """The session database with every migration applied."""
    migrate(database_url)
    return database_url
