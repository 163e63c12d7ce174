"""Shared fixtures: a real PostgreSQL database for the whole test session.

With DATABASE_URL set, the tests create (and drop) a database of their own on that
server; without it, they start the embedded server under .data/ (tests/support/
database_server.py). Either way each session gets a fresh, migrated database, so runs
never see each other's rows; under `pytest -n N` each worker gets one of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from order_engine.migrate import migrate
from order_engine_cli.postgres import Database

# The fault suite's seed option, marker and header line (tests/faults/seeds.py): hooks
# pytest must see before it prints the header, so they live in this conftest.
from tests.faults.seeds import (  # noqa: F401
    pytest_addoption,
    pytest_configure,
    pytest_configure_node,
    pytest_report_header,
    pytest_sessionfinish,
    pytest_terminal_summary,
    pytest_testnodedown,
)
from tests.support.database_server import open_test_server

# The CLI's rich tables fit themselves to the terminal; tests read them at one fixed,
# wide width, so a CI job without a terminal (80 columns) sees the same cells.
os.environ["COLUMNS"] = "200"


_SERVER_KEY = pytest.StashKey[Database]()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config: pytest.Config) -> None:
    """(xdist, controller) Start the server once, before the workers: none of them
    then finds it stopped and starts (or restarts) it under the others."""
    config.stash[_SERVER_KEY] = open_test_server()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SERVER_KEY in config.stash:
        config.stash[_SERVER_KEY].stop()


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own schedulers
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`pytest -n N` shares the suite out by module, in collection order: see
    tests/support/parallel.py for why."""
    from tests.support.parallel import SuiteScheduling

    return SuiteScheduling(config, log)


def _with_dbname(url: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, empty database (not yet migrated) for this test session (or worker)."""
    database = open_test_server()
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
