"""PostgreSQL side of accounts: API keys (hashed), who a connection is, rate-limit counters.

Keys arrive here already hashed (accounts.py makes and checks them); nothing in this
module ever sees a key in the clear, so nothing here can log or store one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from order_engine.database import Repository, jsonb

# A key's last use is recorded at most this often: keeps authentication a read, not a
# write, on busy keys, while still answering "is this key in use?".
LAST_USED_RESOLUTION = "1 minute"
# Only one first key: concurrent `order-engine up`s on an empty database must not both
# create one. (Any fixed number; 0x6B657973 spells "keys".)
_FIRST_KEY_LOCK = 0x6B657973

_KEY_COLUMNS = (
    "k.prefix, k.name, k.account_id, a.name AS account_name,"
    " k.created_at, k.last_used_at, k.revoked_at"
)


@dataclass(frozen=True)
class Caller:
    """Who is asking: the account a request acts for, and the key it presented."""

    account_id: str
    account_name: str
    key_prefix: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Caller:
        return cls(str(row["account_id"]), row["account_name"], row["prefix"])


@dataclass(frozen=True)
class NewConnection:
    """A WebSocket connection being opened ($connect): recorded for the caller its key
    speaks for, in the statement that checks the key (`AccountStore.caller_for_key`)."""

    connection_id: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


# Remember the connection %(connection)s (with %(metadata)s) for the account and key of
# the rows of `source`; again for the same id only refreshes it. Shared by $connect's
# statement (`caller_for_key`) and `SubscriptionStore.add_connection`.
def upsert_connection(source: str) -> str:
    return (
        "INSERT INTO connections (connection_id, metadata, account_id, key_prefix)"
        f" SELECT %(connection)s, %(metadata)s, account_id, key_prefix FROM {source}"
        " ON CONFLICT (connection_id) DO UPDATE SET last_seen_at = now(),"
        " metadata = EXCLUDED.metadata, account_id = EXCLUDED.account_id,"
        " key_prefix = EXCLUDED.key_prefix"
    )


# The live key with the hash %(hash)s (`found`: its prefix, account and account's name),
# its last use noted at most every LAST_USED_RESOLUTION.
_FOUND_KEY = (
    "found AS ("
    "  SELECT k.prefix, k.account_id, a.name AS account_name FROM api_keys k"
    "  JOIN accounts a ON a.id = k.account_id"
    "  WHERE k.key_hash = %(hash)s AND k.revoked_at IS NULL"
    "), touched AS ("
    "  UPDATE api_keys SET last_used_at = now()"
    "  WHERE prefix = (SELECT prefix FROM found)"
    "   AND (last_used_at IS NULL"
    f"        OR last_used_at < now() - interval '{LAST_USED_RESOLUTION}'))"
)

# Counting one request against a key's current fixed window of %(w)s seconds: the
# INSERT (its row: the key's prefix, the window's start, 1), and the rest of it, which
# returns the requests in the window including this one and the seconds until it ends.
# A request whose statement started just before a new window (and commits after a
# later one) counts in the newer window rather than resetting it.
_INSERT_RATE_LIMIT = "INSERT INTO rate_limits AS r (key_prefix, window_start, hits)"
_WINDOW_START = "to_timestamp(floor(extract(epoch FROM now()) / %(w)s) * %(w)s)"
_COUNTED = (
    " ON CONFLICT (key_prefix) DO UPDATE SET"
    "  hits = CASE WHEN EXCLUDED.window_start > r.window_start THEN 1"
    "         ELSE r.hits + 1 END,"
    "  window_start = greatest(r.window_start, EXCLUDED.window_start)"
    " RETURNING hits, extract(epoch FROM"
    "  window_start + make_interval(secs => %(w)s) - now())::float8 AS remaining"
)

# `caller_for_key`: the live key's caller; with a %(connection)s, that connection
# recorded for it.
_CALLER_FOR_KEY = (
    f"WITH {_FOUND_KEY}, connecting AS ("
    "  SELECT account_id, prefix AS key_prefix FROM found"
    "   WHERE %(connection)s::text IS NOT NULL"
    f"), connected AS ({upsert_connection('connecting')})"
    " SELECT * FROM found"
)

# `caller_for_key_counted`: the live key's caller, and the request counted for it; no
# row, and nothing counted, for a key that is not live.
_CALLER_FOR_KEY_COUNTED = (
    f"WITH {_FOUND_KEY}, counted AS ({_INSERT_RATE_LIMIT}"
    f" SELECT prefix, {_WINDOW_START}, 1 FROM found{_COUNTED})"
    " SELECT found.*, counted.hits, counted.remaining FROM found CROSS JOIN counted"
)


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key as listed: everything but the key itself, which is not stored."""

    prefix: str
    name: str
    account_id: str
    account_name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ApiKeyInfo:
        return cls(
            prefix=row["prefix"],
            name=row["name"],
            account_id=str(row["account_id"]),
            account_name=row["account_name"],
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            revoked_at=row["revoked_at"],
        )

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class AccountStore(Repository):
    def insert_api_key(
        self,
        *,
        prefix: str,
        key_hash: bytes,
        name: str,
        account_name: str,
        account_id: str,
        only_if_first: bool = False,
    ) -> ApiKeyInfo | None:
        """Store a key for `account_name`, creating that account (with `account_id`) if
        it does not exist. None when the prefix is taken (draw another) or, with
        `only_if_first`, when the database already has a key."""
        with self.database.transaction() as cur:
            if only_if_first:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_FIRST_KEY_LOCK,))
                cur.execute("SELECT EXISTS (SELECT 1 FROM api_keys) AS taken")
                found = cur.fetchone()
                if found is not None and found["taken"]:
                    return None
            # DO UPDATE (a no-op) rather than DO NOTHING, so the existing row comes back.
            cur.execute(
                "INSERT INTO accounts (id, name) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                (account_id, account_name),
            )
            row = cur.fetchone()
            assert row is not None
            cur.execute(
                "INSERT INTO api_keys (prefix, key_hash, name, account_id)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (prefix) DO NOTHING RETURNING prefix",
                (prefix, key_hash, name, row["id"]),
            )
            if cur.fetchone() is None:
                return None
        return self.get_api_key(prefix)

    def get_api_key(self, prefix: str) -> ApiKeyInfo | None:
        with self.database.statement() as cur:
            cur.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id"
                " WHERE k.prefix = %s",
                (prefix,),
            )
            row = cur.fetchone()
        return None if row is None else ApiKeyInfo.from_row(row)

    def list_api_keys(self) -> list[ApiKeyInfo]:
        with self.database.statement() as cur:
            cur.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id"
                " ORDER BY a.name, k.created_at, k.prefix"
            )
            return [ApiKeyInfo.from_row(row) for row in cur.fetchall()]

    def caller_for_key(
        self, key_hash: bytes, *, connection: NewConnection | None = None
    ) -> Caller | None:
        """The caller a live (unrevoked) key with this hash speaks for, noting its use;
        with `connection`, that connection is recorded for the caller in the same
        statement (and nothing is written for a key that is not live)."""
        with self.database.statement() as cur:
            # One round trip: the writable CTEs run even though nothing reads them.
            cur.execute(
                _CALLER_FOR_KEY,
                {
                    "hash": key_hash,
                    "connection": None if connection is None else connection.connection_id,
                    "metadata": jsonb(None if connection is None else dict(connection.metadata)),
                },
            )
            row = cur.fetchone()
        return None if row is None else Caller.from_row(row)

    def caller_for_key_counted(
        self, key_hash: bytes, window_seconds: int
    ) -> tuple[Caller, int, float] | None:
        """`caller_for_key`, and one request counted against the key's current window
        (`count_request`) in the same statement, for a live key only: (the caller,
        requests in this window including this one, seconds until it ends); None,
        with nothing counted, for a key that is not live."""
        with self.database.statement() as cur:
            cur.execute(_CALLER_FOR_KEY_COUNTED, {"hash": key_hash, "w": window_seconds})
            row = cur.fetchone()
        if row is None:
            return None
        return Caller.from_row(row), int(row["hits"]), float(row["remaining"])

    def caller_for_connection(self, connection_id: str) -> Caller | None:
        """Who a WebSocket connection authenticated as in $connect, while its key lives."""
        with self.database.statement() as cur:
            cur.execute(
                "SELECT k.prefix, k.account_id, a.name AS account_name FROM connections c"
                " JOIN api_keys k ON k.prefix = c.key_prefix AND k.account_id = c.account_id"
                " JOIN accounts a ON a.id = k.account_id"
                " WHERE c.connection_id = %s AND k.revoked_at IS NULL",
                (connection_id,),
            )
            row = cur.fetchone()
        return None if row is None else Caller.from_row(row)

    def revoke_api_key(self, prefix: str) -> ApiKeyInfo | None:
        """Revoke a key (again: no change) and forget its WebSocket connections, so they
        get nothing more; None when no key has this prefix."""
        with self.database.transaction() as cur:
            cur.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
                " WHERE prefix = %s RETURNING prefix",
                (prefix,),
            )
            if cur.fetchone() is None:
                return None
            cur.execute("DELETE FROM connections WHERE key_prefix = %s", (prefix,))
        return self.get_api_key(prefix)

    def count_request(self, key_prefix: str, window_seconds: int) -> tuple[int, float]:
        """Count one request against the key's current fixed window (windows start at
        multiples of `window_seconds` since the epoch, on the database's clock, which
        every Lambda container shares). Returns (requests in this window including
        this one, seconds until the window ends)."""
        with self.database.statement() as cur:
            cur.execute(
                f"{_INSERT_RATE_LIMIT} VALUES (%(key)s, {_WINDOW_START}, 1){_COUNTED}",
                {"key": key_prefix, "w": window_seconds},
            )
            row = cur.fetchone()
        assert row is not None
        return int(row["hits"]), float(row["remaining"])
