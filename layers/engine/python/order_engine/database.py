"""The database handle every repository shares: one connection pool per process, and the
rules every query follows.

- A pool is opened once and reused: a Lambda container keeps it across invocations.
  Each checkout checks the connection, so connections killed by a database restart (or
  by RDS Proxy) are replaced instead of failing the next query; the first broken one
  found has every idle one checked at once. The check asks the server only when the
  connection is not evidently healthy: the server has sent something since (a killed
  connection's FATAL notice or end of file), libpq no longer sees it idle, or it lay
  unused long enough for a middlebox to have dropped it silently
  (see `_check_connection`).
- Connections are in autocommit mode; a unit of work of several statements runs in an
  explicit `transaction()` block, so what commits together is visible in the code; a
  single statement runs on its own (`statement()`), already atomic.
- Repositories (store.py for orders, outbox.py, subscriptions.py, account_store.py,
  dex/ledger.py) each hold the process's one `Database`; none reaches into another.
- Any psycopg.OperationalError (refused, reset, restarting, pool timeout) becomes an
  InfrastructureError: the caller leaves the order alone and lets its message retry.
- JSON is written with Decimals as strings, so amounts never pass through a float.
"""

from __future__ import annotations

import functools
import json
import select
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from order_engine.database_secret import DatabaseSecret, SecretConnection
from order_engine.errors import InfrastructureError
from order_engine.settings import Settings

DictCursor = psycopg.Cursor[DictRow]

# A connection last handed out this long ago gets a round trip anyway (one held that
# long by its caller too: a spare round trip, harmless). A restart, a failover,
# pg_terminate_backend or a proxy ending a connection all close its socket (a FATAL
# notice, then end of file), which `_evidently_healthy` sees without asking the server.
# A connection dropped without a word it cannot see: a NAT gateway or a firewall
# forgetting a quiet flow (AWS's NAT gateway answers one idle for 350 s with a reset),
# as happens while a Lambda container sleeps between invocations. That takes minutes of
# quiet, so a round trip after 30 s meets the reset before the caller's query would; at
# load it costs nothing (a connection goes back out within milliseconds), and a function
# called seldom pays it per invocation, as every checkout did before. (A flow dropped
# with no answer at all would hang the round trip as it would the query.)
QUIET_CHECK_AFTER = 30.0


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# NaN is not JSON: refuse it here rather than let PostgreSQL reject the text.
_dumps = functools.partial(
    json.dumps, default=_json_default, allow_nan=False, separators=(",", ":")
)


def jsonb(value: Any) -> Jsonb:
    """A jsonb parameter; Decimal -> "1.5", datetime -> ISO 8601, anything else odd raises."""
    return Jsonb(value, dumps=_dumps)


class Database:
    """The pool and the transaction/error rules; the repositories add the queries."""

    def __init__(
        self, url: str | DatabaseSecret, *, max_size: int = 4, timeout: float = 3.0
    ) -> None:
        """`url`: PostgreSQL's, or the secret holding its credentials (on AWS). `timeout`:
        how long a call waits for a connection before it raises InfrastructureError. Well
        under the functions' 10 s timeout, so a database outage is a clean, classified
        error (503, a failed record), not a Lambda timeout."""
        self.url = url if isinstance(url, str) else None
        # connect_timeout bounds each attempt to reach a server that is down.
        # prepare_threshold 1: a statement is prepared (parsed and analysed once per
        # connection, its plan cached as the server's plan_cache_mode says) the second
        # time the connection runs it, not the sixth: the five before are each parsed,
        # analysed and planned anew. Every statement here is one of a fixed set of
        # shapes that each connection runs over and over, and every new connection paid
        # for those five of each (1 in 8 executions of a 600-order run were unprepared).
        # Not 0: what runs once is not worth a round trip to prepare it, and psycopg
        # never caches an empty query's preparation (the pool's check), so 0 would
        # prepare that one anew at every check.
        kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": 2, "prepare_threshold": 1}
        if isinstance(url, DatabaseSecret):
            kwargs["secret"] = url  # SecretConnection re-reads it when a connect fails
        # When each connection last left the pool (see QUIET_CHECK_AFTER); weak, so a
        # connection the pool closes takes its entry along.
        self._handed_out_at: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self._pool = ConnectionPool(
            url,
            connection_class=SecretConnection,
            min_size=1,
            max_size=max(1, max_size),
            timeout=timeout,
            kwargs=kwargs,
            check=self._check_connection,
            name="order-engine",
            open=False,
        )
        # Without waiting: a database that is down at cold start must not crash the
        # container; the first call will raise InfrastructureError instead.
        self._pool.open(wait=False)

    def _check_connection(self, conn: psycopg.Connection[Any]) -> None:
        """The pool's check before it hands a connection out.

        A round trip (psycopg_pool's empty query) only when the connection is not
        evidently healthy: on a connection in use it would double the statements the
        server serves.

        A broken connection is seldom alone: a restarted server, a failover, a proxy
        dropping idle connections break them all. So every idle one is tested at once
        and the broken ones replaced; otherwise the caller meets them one by one, with
        the pool's back-off (1 s, then 2 s) in between, until its timeout runs out and
        it answers 503 while the database is up again.
        """
        now = time.monotonic()
        last = self._handed_out_at.get(conn)
        self._handed_out_at[conn] = now
        # A connection never handed out may have waited in the pool since a cold start.
        if last is not None and now - last < QUIET_CHECK_AFTER and _evidently_healthy(conn):
            return
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            self._pool.check()
            raise

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def ping(self) -> None:
        """Raise InfrastructureError unless the database answers."""
        with self.connection() as conn:
            conn.execute("SELECT 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        if not settings.database_url:
            raise ValueError("DATABASE_URL is not set")
        return cls(
            settings.database_url, max_size=settings.db_pool_max, timeout=settings.db_pool_timeout
        )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise InfrastructureError(f"database unavailable: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[DictCursor]:
        """One transaction: commits when the block ends, rolls back if it raises."""
        with (
            self.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            yield cur

    @contextmanager
    def statement(self) -> Iterator[DictCursor]:
        """A cursor whose statements each commit on their own (autocommit): for reads,
        and for a write that is one statement. A transaction block costs two round trips
        more (BEGIN, COMMIT), and a step pays for every one of them."""
        with self.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            yield cur


def _evidently_healthy(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle autocommit connection is fine as far as the client can tell
    without asking the server: libpq holds it open and idle, and nothing waits on its
    socket. An idle connection's server speaks only to end it (a FATAL notice, end of
    file); anything else there (a notice, a notification) also gets the round trip,
    which reads it."""
    if conn.broken or conn.closed:
        return False
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    try:
        socket = conn.pgconn.socket
    except psycopg.OperationalError:
        return False
    poller = select.poll()
    poller.register(socket, select.POLLIN)
    return not poller.poll(0)


def fetch_one(cur: DictCursor) -> dict[str, Any]:
    """The row a statement must return (e.g. INSERT … RETURNING without ON CONFLICT)."""
    row = cur.fetchone()
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


class Repository:
    """The queries of one concern over the process's `Database` (shared, never owned:
    closing the database is the caller's business)."""

    def __init__(self, database: Database) -> None:
        self.database = database
