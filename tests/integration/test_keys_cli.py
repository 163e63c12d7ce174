"""`order-engine keys` and the local development key, against the session's database."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from rich.console import Console

from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts, key_prefix
from order_engine.database import Database
from order_engine.errors import Unauthorized
from order_engine.migrate import migrate
from order_engine_cli import demo as demo_module
from order_engine_cli.dev_key import (
    DEV_ACCOUNT,
    ensure_dev_key,
    read_saved_key,
    read_saved_keys,
)
from order_engine_cli.main import cli
from order_engine_cli.up import banner, try_it
from tests.support.keys import secret_of


@pytest.fixture
def run(migrated_url: str) -> Any:
    """`order-engine …` in-process, on the session's database (DATABASE_URL)."""
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        result = runner.invoke(cli, list(args), env={"DATABASE_URL": migrated_url})
        assert result.exit_code == 0, result.output
        return result

    return invoke


def test_keys_create_prints_a_working_key_once_with_its_account(
    run: Any, account_store: AccountStore
) -> None:
    account = f"acme-{uuid.uuid4().hex[:8]}"
    output = run("keys", "create", "ci", "--account", account).output

    key = output.strip().splitlines()[-1]
    assert output.count(key) == 1
    assert f"for account {account!r}" in output
    assert Accounts(account_store).authenticate(key).account_name == account


def test_keys_create_makes_the_account_named_like_the_key_by_default(
    run: Any, account_store: AccountStore
) -> None:
    name = f"solo-{uuid.uuid4().hex[:8]}"
    key = run("keys", "create", name, "--quiet").output.strip()
    assert Accounts(account_store).authenticate(key).account_name == name


def test_keys_list_shows_prefix_name_account_and_dates_but_never_the_key(
    run: Any, migrated_url: str
) -> None:
    name = f"listed-{uuid.uuid4().hex[:8]}"
    key = run("keys", "create", name, "--quiet").output.strip()

    output = (
        CliRunner()
        .invoke(cli, ["keys", "list"], env={"DATABASE_URL": migrated_url, "COLUMNS": "250"})
        .output
    )

    row = next(line for line in output.splitlines() if name in line)
    assert key_prefix(key) in row and "—" in row  # never used, not revoked
    for header in ("prefix", "name", "account", "created", "last used", "revoked"):
        assert header in output
    assert key not in output and secret_of(key)[:12] not in output


def test_keys_revoke_refuses_the_key_from_then_on(run: Any, account_store: AccountStore) -> None:
    key = run("keys", "create", f"leaving-{uuid.uuid4().hex[:8]}", "--quiet").output.strip()
    prefix = key_prefix(key)
    assert prefix is not None

    output = run("keys", "revoke", prefix).output

    assert f"Revoked key {prefix}" in output
    with pytest.raises(Unauthorized):
        Accounts(account_store).authenticate(key)


def test_keys_revoke_of_an_unknown_prefix_fails_with_a_message(migrated_url: str) -> None:
    result = CliRunner().invoke(
        cli, ["keys", "revoke", "ffffffff"], env={"DATABASE_URL": migrated_url}
    )
    assert result.exit_code == 1
    assert "no API key has the prefix 'ffffffff'" in result.output


def test_keys_create_refuses_an_empty_name(migrated_url: str) -> None:
    result = CliRunner().invoke(cli, ["keys", "create", " "], env={"DATABASE_URL": migrated_url})
    assert result.exit_code == 2
    assert "name must be 1 to 100 printable characters" in result.output


# --- the development key ---------------------------------------------------------------


@pytest.fixture
def empty_database(fresh_database_url: str) -> str:
    migrate(fresh_database_url)
    return fresh_database_url


def test_the_first_run_makes_the_dev_key_once_and_the_next_run_reuses_it(
    empty_database: str, tmp_path: Path
) -> None:
    path = tmp_path / ".data" / "dev-api-key"

    first = ensure_dev_key(empty_database, path)
    again = ensure_dev_key(empty_database, path)

    assert first is not None and first.created
    assert again is not None and not again.created and again.key == first.key
    assert read_saved_key(path) == first.key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with Database(empty_database, max_size=1) as database:
        accounts = Accounts(AccountStore(database))
        assert accounts.authenticate(first.key).account_name == DEV_ACCOUNT
        assert len(accounts.list_keys()) == 1
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (1,)


def test_no_dev_key_is_made_on_a_database_that_has_keys(
    empty_database: str, tmp_path: Path
) -> None:
    with Database(empty_database, max_size=1) as database:
        Accounts(AccountStore(database)).create_key("someone")
    path = tmp_path / "dev-api-key"
    path.write_text("oe_live_0123abcd_" + "f" * 43)  # saved for another database

    assert ensure_dev_key(empty_database, path) is None
    assert read_saved_key(path) == "oe_live_0123abcd_" + "f" * 43  # left alone


def test_a_second_database_adds_its_dev_key_and_keeps_the_first(
    empty_database: str, other_fresh_database_url: str, tmp_path: Path
) -> None:
    # `up` on the embedded database, then on a DATABASE_URL, then back: no key is lost,
    # and the first line is always the key for the database `up` ran on last.
    migrate(other_fresh_database_url)
    path = tmp_path / "dev-api-key"

    first = ensure_dev_key(empty_database, path)
    second = ensure_dev_key(other_fresh_database_url, path)
    assert first is not None and second is not None and second.created
    assert read_saved_keys(path) == [second.key, first.key]
    assert read_saved_key(path) == second.key

    back = ensure_dev_key(empty_database, path)
    assert back is not None and not back.created and back.key == first.key
    assert read_saved_keys(path) == [first.key, second.key]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_banner_and_its_examples_show_the_dev_key(tmp_path: Path) -> None:
    runtime = SimpleNamespace(
        http_url="http://127.0.0.1:3000",
        ws_url=lambda: "ws://127.0.0.1:3001/v1",
        management_url=lambda: "http://127.0.0.1:3001/v1",
        sqs=None,
    )
    key = "oe_live_0123abcd_" + "g" * 43
    dev_key = SimpleNamespace(key=key, path=tmp_path / "dev-api-key", created=True)
    console = Console(record=True, width=200)

    console.print(banner(runtime, "PostgreSQL", dev_key))  # type: ignore[arg-type]
    examples = try_it(runtime, dev_key)  # type: ignore[arg-type]

    assert "account local-dev" in console.export_text()
    assert f'-H "Authorization: Bearer {key}"' in examples
    assert f"?orderId=ORDER_ID&apiKey={key}" in examples
    assert "│" not in examples  # plain lines: they copy and paste as they are


def test_demo_without_any_key_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_module, "DEV_KEY_FILE", tmp_path / "none")
    monkeypatch.delenv("ORDER_ENGINE_API_KEY", raising=False)
    result = CliRunner().invoke(cli, ["demo", "--api", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "no API key" in result.output
