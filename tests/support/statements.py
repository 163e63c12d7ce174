"""Counting the statements a piece of the engine runs: what it costs PostgreSQL, which
the cost per order adds up (docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from order_engine.database import Database


@contextmanager
def counted_statements(database: Database) -> Iterator[list[int]]:
    """`[n]`: the statements `database` ran inside the block, by the pooled connections
    they took (each statement, and each transaction, takes one)."""
    taken = [0]
    checkout = database.connection

    @contextmanager
    def counted() -> Iterator[Any]:
        taken[0] += 1
        with checkout() as conn:
            yield conn

    database.connection = counted  # type: ignore[method-assign]
    try:
        yield taken
    finally:
        del database.connection
