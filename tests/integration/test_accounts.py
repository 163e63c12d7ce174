"""Accounts and API keys against a real PostgreSQL: keys are kept only as hashes, they
authenticate until revoked, orders are read per account, and the rate limit's counter."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import psycopg
import pytest

from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts, RateLimiter, key_prefix, new_key
from order_engine.database import Database
from order_engine.errors import NotFound, RateLimited, Unauthorized, ValidationError
from order_engine.migrate import load_migrations, migrate
from order_engine.store import Store
from order_engine.subscriptions import SubscriptionStore
from tests.support.keys import secret_of


def everything_stored(url: str) -> str:
    """Every row of every table, as text: what someone with a database dump would see."""
    with psycopg.connect(url) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        return "\n".join(
            str(row) for table in tables for row in conn.execute(f'SELECT t::text FROM "{table}" t')
        )


def test_a_new_key_is_shaped_oe_live_prefix_secret() -> None:
    key = new_key()
    assert key.startswith("oe_live_")
    assert key_prefix(key) == key.split("_")[2] and len(key_prefix(key) or "") == 8
    assert len(key) == len("oe_live_") + 8 + 1 + 43
    assert new_key() != key


def test_a_key_is_stored_only_as_its_sha256(account_store: AccountStore, migrated_url: str) -> None:
    issued = Accounts(account_store).create_key(f"hashed-{uuid.uuid4().hex[:8]}")
    secret = secret_of(issued.key)
    assert len(secret) == 43

    with psycopg.connect(migrated_url) as conn:
        (stored,) = conn.execute(
            "SELECT key_hash FROM api_keys WHERE prefix = %s", (issued.info.prefix,)
        ).fetchone() or (None,)
    assert bytes(stored) == hashlib.sha256(issued.key.encode()).digest()
    dump = everything_stored(migrated_url)
    assert issued.key not in dump and secret[:16] not in dump
    assert issued.key not in repr(issued)


def test_a_key_authenticates_as_its_account_until_revoked(account_store: AccountStore) -> None:
    accounts = Accounts(account_store)
    issued = accounts.create_key("ci", account=f"acme-{uuid.uuid4().hex[:8]}")

    caller = accounts.authenticate(issued.key)
    assert (caller.account_id, caller.key_prefix) == (
        issued.info.account_id,
        issued.info.prefix,
    )
    revoked = accounts.revoke_key(issued.info.prefix)
    assert revoked.revoked
    with pytest.raises(Unauthorized):
        accounts.authenticate(issued.key)
    assert accounts.revoke_key(issued.key).revoked_at == revoked.revoked_at  # idempotent


def test_keys_of_one_account_name_share_the_account(account_store: AccountStore) -> None:
    accounts = Accounts(account_store)
    account = f"shared-{uuid.uuid4().hex[:8]}"
    first = accounts.create_key("laptop", account=account)
    second = accounts.create_key("server", account=account)
    assert first.info.account_id == second.info.account_id
    assert first.info.prefix != second.info.prefix


@pytest.mark.parametrize(
    "key", [None, "", "oe_live_", "x" * 10_000, "oe_live_0123abcd_" + "d" * 43]
)
def test_a_missing_malformed_or_unknown_key_is_unauthorized(
    account_store: AccountStore, key: str | None
) -> None:
    with pytest.raises(Unauthorized) as refused:
        Accounts(account_store).authenticate(key)
    assert refused.value.key_presented == bool(key)


def test_revoking_an_unknown_prefix_is_not_found(account_store: AccountStore) -> None:
    with pytest.raises(NotFound):
        Accounts(account_store).revoke_key("ffffffff")


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "tab\there"])
def test_a_key_needs_a_sensible_name(account_store: AccountStore, name: str) -> None:
    with pytest.raises(ValidationError):
        Accounts(account_store).create_key(name)


def test_revoking_a_key_forgets_its_websocket_connections(
    account_store: AccountStore, new_order: Any
) -> None:
    accounts = Accounts(account_store)
    issued = accounts.create_key(f"ws-{uuid.uuid4().hex[:8]}")
    connection = f"c-{uuid.uuid4().hex[:8]}"
    SubscriptionStore(account_store.database).add_connection(
        connection, caller=accounts.authenticate(issued.key)
    )
    assert accounts.authenticate_connection(connection).key_prefix == issued.info.prefix

    accounts.revoke_key(issued.info.prefix)

    with pytest.raises(Unauthorized):
        accounts.authenticate_connection(connection)


def test_an_order_is_read_only_by_its_own_account(
    store: Store, make_request: Any, account_id: str, make_key: Any
) -> None:
    order = store.create_order(uuid.uuid4(), make_request(), account_id=account_id, outbox=[]).order
    stranger = make_key().info.account_id

    assert store.get_order(order.id, account_id=account_id) == order
    assert store.get_order(order.id, account_id=stranger) is None
    assert store.get_order(order.id) == order  # the workers read any order


def test_the_rate_limit_counts_per_key_and_tells_when_to_retry(
    account_store: AccountStore, make_key: Any
) -> None:
    accounts = Accounts(account_store)
    limiter = RateLimiter(account_store, per_minute=3)
    busy = accounts.authenticate(make_key().key)
    calm = accounts.authenticate(make_key().key)
    _inside_one_window(account_store)

    for _ in range(3):
        limiter.check(busy)
    with pytest.raises(RateLimited) as limited:
        limiter.check(busy)

    assert 1 <= limited.value.retry_after <= 60
    limiter.check(calm)


def test_a_new_window_starts_a_new_count(account_store: AccountStore, make_key: Any) -> None:
    prefix = make_key().info.prefix
    hits, remaining = account_store.count_request(prefix, 1)  # one-second windows
    assert hits == 1 and 0 < remaining <= 1
    time.sleep(remaining + 0.05)
    assert account_store.count_request(prefix, 1)[0] == 1


def test_a_limit_of_zero_means_no_limit(account_store: AccountStore, make_key: Any) -> None:
    caller = Accounts(account_store).authenticate(make_key().key)
    limiter = RateLimiter(account_store, per_minute=0)
    for _ in range(5):
        limiter.check(caller)


def test_the_first_key_is_created_only_on_a_database_without_keys(
    fresh_database_url: str,
) -> None:
    migrate(fresh_database_url)
    with Database(fresh_database_url, max_size=2) as fresh:
        accounts = Accounts(AccountStore(fresh))
        first = accounts.create_first_key("local-dev", account="local-dev")
        assert first is not None
        assert accounts.create_first_key("local-dev", account="local-dev") is None
        assert [key.prefix for key in accounts.list_keys()] == [first.info.prefix]


def test_orders_from_before_accounts_belong_to_the_legacy_account(
    fresh_database_url: str, make_request: Any
) -> None:
    migrate(fresh_database_url, load_migrations()[:1])
    order_id = str(uuid.uuid4())
    with psycopg.connect(fresh_database_url) as conn:
        conn.execute(
            "INSERT INTO orders (id, status, type, token_in, token_out, amount, slippage_bps,"
            " request) VALUES (%s, 'pending', 'market', 'SOL', 'USDC', 1, 100, '{}')",
            (order_id,),
        )
        conn.execute(
            "INSERT INTO idempotency_keys (key, fingerprint, order_id) VALUES ('k', 'f', %s)",
            (order_id,),
        )

    migrate(fresh_database_url)

    with Database(fresh_database_url, max_size=2) as fresh:
        upgraded = Store(fresh)
        legacy = Accounts(AccountStore(fresh)).create_key("archaeologist", account="legacy")
        assert upgraded.get_order(order_id, account_id=legacy.info.account_id) is not None
        # New orders may reuse the legacy key name under their own account.
        mine = Accounts(AccountStore(fresh)).create_key("new").info.account_id
        created = upgraded.create_order(
            uuid.uuid4(), make_request(), account_id=mine, outbox=[], idempotency_key="k"
        )
        assert created.created


def _inside_one_window(store: AccountStore) -> None:
    with store.database.statement() as cur:
        cur.execute("SELECT mod(extract(epoch FROM now()), 60)::float8 AS s")
        row = cur.fetchone()
    assert row is not None
    if row["s"] > 55:
        time.sleep(60.5 - row["s"])
