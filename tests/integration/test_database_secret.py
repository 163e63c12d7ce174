"""On AWS the engine connects with credentials from Secrets Manager (moto's, in-process)
to the real session database, and survives a rotation of those credentials."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws
from psycopg import sql

from order_engine.errors import InfrastructureError
from order_engine.settings import Settings
from order_engine.wiring import Engine
from tests.support.aws import FAKE_CREDENTIALS


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


@pytest.fixture
def admin(migrated_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def make_role(admin: psycopg.Connection[Any]) -> Iterator[Any]:
    """A login role with the session user's rights on the tables (and a password, for
    servers that ask for one); dropped afterwards."""
    made: list[str] = []
    owner = admin.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]

    def factory() -> tuple[str, str]:
        name, password = f"secret_test_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                sql.Identifier(name), sql.Literal(password), sql.Identifier(owner)
            )
        )
        made.append(name)
        return name, password

    yield factory
    for name in made:
        _disconnect(admin, name)
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def _disconnect(admin: psycopg.Connection[Any], role: str) -> None:
    """Ends the role's sessions and waits until they are gone (as a restart's are)."""
    admin.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = %s",
        [role],
    )


def _sessions(admin: psycopg.Connection[Any], role: str) -> int:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", [role]
    ).fetchone()
    assert row is not None
    return int(row[0])


def secret_string(url: str, user: str, password: str) -> str:
    """The JSON RDS writes for a database's credentials."""
    where = psycopg.conninfo.conninfo_to_dict(url)
    return json.dumps(
        {
            "engine": "postgres",
            "username": user,
            "password": password,
            "host": where["host"],
            "port": int(where.get("port") or 5432),
            "dbname": where["dbname"],
        }
    )


def count_reads(client: Any) -> list[str]:
    reads: list[str] = []
    client.meta.events.register(
        "provide-client-params.secrets-manager.GetSecretValue",
        lambda params, **_: reads.append(params["SecretId"]),
    )
    return reads


def engine_on(arn: str, client: Any, monkeypatch: pytest.MonkeyPatch, **env: str) -> Engine:
    """The engine as a function configured by template.yaml with the secret builds it;
    its Secrets Manager client is `client`, so the test can count the reads."""
    monkeypatch.setattr("order_engine.wiring.boto3.client", lambda *a, **k: client)
    return Engine(Settings.from_env({"DATABASE_SECRET_ARN": arn, "AWS_REGION": "us-east-1", **env}))


def new_secret(secrets: Any, secret: str) -> str:
    """The ARN of a new secret holding `secret`, under a name of its own."""
    return str(
        secrets.create_secret(Name=f"orders-db-{uuid.uuid4().hex[:6]}", SecretString=secret)["ARN"]
    )


def test_the_engine_connects_with_the_credentials_in_the_secret(
    secrets: Any, migrated_url: str, make_role: Any, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = make_role()
    arn = new_secret(secrets, secret_string(migrated_url, user, password))
    reads = count_reads(secrets)

    engine = engine_on(arn, secrets, monkeypatch)
    try:
        issued = engine.accounts.create_key(f"secret-{uuid.uuid4().hex[:8]}")
        assert engine.accounts.authenticate(issued.key).account_id == issued.info.account_id
        assert _sessions(admin, user) >= 1  # the pool's connections log in as the secret's user
        assert reads == [arn]  # read once, at cold start, then cached
    finally:
        engine.database.close()


def test_after_a_rotation_the_engine_rereads_the_secret_once_and_reconnects(
    secrets: Any, migrated_url: str, make_role: Any, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_user, old_password = make_role()
    new_user, new_password = make_role()
    arn = new_secret(secrets, secret_string(migrated_url, old_user, old_password))
    reads = count_reads(secrets)
    engine = engine_on(arn, secrets, monkeypatch)
    try:
        engine.database.ping()

        # Rotation (alternating users): the secret names the new user, the old one may
        # no longer log in, and its connections are gone (a proxy or a restart).
        secrets.put_secret_value(
            SecretId=arn, SecretString=secret_string(migrated_url, new_user, new_password)
        )
        admin.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(old_user)))
        _disconnect(admin, old_user)

        engine.database.ping()

        assert _sessions(admin, new_user) >= 1
        assert _sessions(admin, old_user) == 0
        assert reads == [arn, arn]
    finally:
        engine.database.close()


def test_credentials_that_stay_refused_are_an_infrastructure_error_read_once_more(
    secrets: Any, migrated_url: str, make_role: Any, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = make_role()
    admin.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(user)))
    arn = new_secret(secrets, secret_string(migrated_url, user, password))
    reads = count_reads(secrets)
    engine = engine_on(arn, secrets, monkeypatch)
    try:
        with pytest.raises(InfrastructureError):
            engine.database.ping()
        # The pool retried its connects meanwhile; only the first re-read the secret.
        assert reads == [arn, arn]
    finally:
        engine.database.close()


def test_an_unreadable_secret_fails_at_cold_start_naming_it(
    secrets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf"
    engine = engine_on(arn, secrets, monkeypatch)

    with pytest.raises(InfrastructureError, match=r"cannot read database secret .*missing"):
        engine.database  # noqa: B018 (opening the database is what reads the secret)


def test_rds_master_user_secret_connects_where_the_template_says(
    secrets: Any, migrated_url: str, make_role: Any, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RDS's own master-user secret holds only the username and the password; the
    template's DatabaseHost / DatabaseName (PGHOST / PGDATABASE) say where to connect,
    as they name RDS Proxy's endpoint instead of a secret's host."""
    user, password = make_role()
    arn = new_secret(secrets, json.dumps({"username": user, "password": password}))
    where = psycopg.conninfo.conninfo_to_dict(migrated_url)
    engine = engine_on(
        arn,
        secrets,
        monkeypatch,
        PGHOST=str(where["host"]),
        PGPORT=str(where.get("port") or 5432),
        PGDATABASE=str(where["dbname"]),
    )
    try:
        engine.database.ping()
        assert _sessions(admin, user) >= 1
    finally:
        engine.database.close()
