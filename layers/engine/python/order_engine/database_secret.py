"""Database credentials from AWS Secrets Manager: read at cold start, cached, re-read
when the database refuses them (rotation).

On AWS, template.yaml sets DATABASE_SECRET_ARN instead of DATABASE_URL, so no password
sits in a function's configuration, where the console and anyone allowed
`lambda:GetFunctionConfiguration` could read it. The secret is the JSON that RDS and
Aurora write for rotated credentials:
`{"username": …, "password": …, "host": …, "port": 5432, "dbname": …}`. Where to connect
may also come from elsewhere (`where`): RDS Proxy's endpoint instead of the database's
host, or all of it for RDS's own master-user secret, which holds only the username and
the password.

Rotation changes the password (single user) or the user (alternating users). Open
connections keep working; a new connection made with the cached credentials is
refused. So when a connection cannot be opened, `SecretConnection` re-reads the secret
once and, if it now holds other credentials, connects again with them at once. libpq
gives no SQLSTATE for a refused login (only its message), so the refusal is not
classified: any failed connect re-reads, and the credentials' change decides whether to
retry. A database that is down thus costs one read per `REREAD_INTERVAL` at most.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Self

import psycopg
from psycopg.conninfo import make_conninfo

from order_engine.errors import InfrastructureError
from order_engine.settings import Settings

log = logging.getLogger(__name__)

# Between two reads of the secret after failed connects: rotation needs one read, an
# outage must not turn every reconnect attempt into a Secrets Manager call.
REREAD_INTERVAL = 10.0

REQUIRED_KEYS = ("username", "password", "host")


def conninfo_from_secret(
    secret_string: str, *, secret_arn: str, where: Mapping[str, str] | None = None
) -> str:
    """The libpq connection string for the credentials in `secret_string`; `where`
    (host, port, dbname) wins over the secret's own."""
    try:
        fields = json.loads(secret_string)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        raise InfrastructureError(f"database secret {secret_arn} is not a JSON object")
    fields |= {key: value for key, value in (where or {}).items() if value}
    missing = [key for key in REQUIRED_KEYS if not fields.get(key)]
    if missing:
        raise InfrastructureError(f"database secret {secret_arn} has no {', '.join(missing)}")
    return make_conninfo(
        "",
        user=str(fields["username"]),
        password=str(fields["password"]),
        host=str(fields["host"]),
        port=str(fields.get("port") or 5432),
        dbname=str(fields.get("dbname") or "postgres"),
    )


class DatabaseSecret:
    """The credentials of one secret, cached for the life of the process.

    Callable: the connection pool calls it for the connection string of every new
    connection (psycopg_pool accepts a callable conninfo)."""

    def __init__(
        self, secret_arn: str, client: Any, *, where: Mapping[str, str] | None = None
    ) -> None:
        """`client`: a boto3 Secrets Manager client; `where`: host, port, dbname that win
        over the secret's."""
        self.secret_arn = secret_arn
        self._client = client
        self._where = dict(where or {})
        self._lock = threading.Lock()
        self._conninfo: str | None = None
        self._reread_at = float("-inf")

    @classmethod
    def from_settings(cls, settings: Settings, client: Any) -> DatabaseSecret:
        if not settings.database_secret_arn:
            raise ValueError("DATABASE_SECRET_ARN is not set")
        where = {
            "host": settings.database_host or "",
            "port": settings.database_port or "",
            "dbname": settings.database_name or "",
        }
        return cls(settings.database_secret_arn, client, where=where)

    def __call__(self) -> str:
        with self._lock:
            if self._conninfo is None:
                self._conninfo = self._read()
            return self._conninfo

    def reread(self) -> bool:
        """Read the secret again (at most once per REREAD_INTERVAL); True if it now holds
        other credentials than those cached."""
        with self._lock:
            if time.monotonic() - self._reread_at < REREAD_INTERVAL:
                return False
            self._reread_at = time.monotonic()
            fresh = self._read()
            changed = fresh != self._conninfo
            self._conninfo = fresh
            return changed

    def _read(self) -> str:
        try:
            response = self._client.get_secret_value(SecretId=self.secret_arn)
        except Exception as exc:  # botocore's errors: denied, missing, unreachable
            raise InfrastructureError(
                f"cannot read database secret {self.secret_arn}: {exc}"
            ) from exc
        return conninfo_from_secret(
            response.get("SecretString") or "", secret_arn=self.secret_arn, where=self._where
        )


class SecretConnection(psycopg.Connection[Any]):
    """A connection whose failed connect re-reads the secret once (see the module)."""

    @classmethod
    def connect(  # type: ignore[override]
        cls, conninfo: str = "", *, secret: DatabaseSecret | None = None, **kwargs: Any
    ) -> Self:
        try:
            return super().connect(conninfo, **kwargs)
        except psycopg.OperationalError:
            if secret is None or not _credentials_changed(secret):
                raise  # the refusal itself, which the pool handles and retries
        log.warning("database secret %s changed (rotated): connecting again", secret.secret_arn)
        return super().connect(secret(), **kwargs)


def _credentials_changed(secret: DatabaseSecret) -> bool:
    try:
        return secret.reread()
    except InfrastructureError:
        # Secrets Manager unreachable too (a network outage): the refused connect stays
        # the error the pool sees, and the next one tries the secret again.
        log.warning("could not re-read database secret %s", secret.secret_arn, exc_info=True)
        return False
