"""Reading an order's outbox rows straight from the table, as an operator would.

The engine has no such query (nothing in it needs one); tests look at the table to
see what a write left for the queues.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from order_engine.records import OutboxRow


def outbox_rows(database_url: str, order_id: object) -> list[OutboxRow]:
    """Every outbox row of the order, oldest first."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT * FROM outbox WHERE order_id = %s ORDER BY id", (str(order_id),)
        ).fetchall()
    return [OutboxRow.from_row(row) for row in rows]


def unsent_topics(database_url: str, order_id: object) -> list[str]:
    """The topics of the order's rows not yet published, oldest first."""
    return [row.topic for row in outbox_rows(database_url, order_id) if row.sent_at is None]
