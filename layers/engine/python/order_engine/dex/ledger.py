"""The simulated chain's memory of signed transactions, in PostgreSQL.

A real chain remembers every signature it has seen, across every process that talks to
it; the simulation must too, or a redelivered submit in another Lambda would swap twice.
`dex_submissions` has the signature as primary key and the order id as a unique key:
one transaction per order, ever.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from order_engine.database import Repository, fetch_one, jsonb
from order_engine.dex.venue import LedgerEntry


class SecondSwapError(RuntimeError):
    """A second, different transaction for an order that already has one: a bug that
    would swap twice, refused by the ledger."""


class PostgresLedger(Repository):
    """The simulated chain's memory of signatures (dex.venue.SubmissionLedger), kept in
    PostgreSQL so it outlives any one process, as a chain does."""

    def record(
        self, signature: str, venue: str, order_id: str, payload: dict[str, Any]
    ) -> LedgerEntry:
        """Record `signature` unless known; return the stored entry, first=True only
        for the call that recorded it. A second signature for one order raises
        SecondSwapError."""
        try:
            # Two statements at most, each atomic: no transaction block needed.
            with self.database.statement() as cur:
                cur.execute(
                    "INSERT INTO dex_submissions (signature, order_id, venue, payload)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (signature) DO NOTHING RETURNING *",
                    (signature, order_id, venue, jsonb(payload)),
                )
                row = cur.fetchone()
                if row is not None:
                    return _ledger_entry(row, first=True)
                cur.execute("SELECT * FROM dex_submissions WHERE signature = %s", (signature,))
                return _ledger_entry(fetch_one(cur), first=False)
        except psycopg.errors.UniqueViolation as exc:
            # On order_id. Either a concurrent submit of this very signature committed
            # first (ON CONFLICT only arbitrates the signature, so the race surfaces
            # here): a resend, not a second swap; or a different signature for the order.
            known = self.get(signature)
            if known is not None:
                return known
            raise SecondSwapError(
                f"order {order_id} already has a transaction; refusing {signature}"
            ) from exc

    def get(self, signature: str) -> LedgerEntry | None:
        with self.database.statement() as cur:
            cur.execute("SELECT * FROM dex_submissions WHERE signature = %s", (signature,))
            row = cur.fetchone()
            return None if row is None else _ledger_entry(row, first=False)


def _ledger_entry(row: Mapping[str, Any], *, first: bool) -> LedgerEntry:
    return LedgerEntry(
        signature=row["signature"],
        venue=row["venue"],
        order_id=str(row["order_id"]),
        submitted_at=row["submitted_at"],
        first=first,
        payload=dict(row["payload"]),
    )
