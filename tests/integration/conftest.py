"""Integration fixtures: the session's database, migrated once, and stores on it.

Tests never truncate: each one creates its own orders (fresh uuids) and looks only at
those, so tests stay independent of each other and of their order.
"""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts, IssuedKey
from order_engine.database import Database
from order_engine.order_request import OrderRequest, validate_order_request
from order_engine.orders import Status
from order_engine.outbox import OutboxStore
from order_engine.records import Order, OutboxMessage, OutboxRow
from order_engine.store import Store
from order_engine.subscriptions import SubscriptionStore
from tests.support.outbox import outbox_rows


@pytest.fixture(scope="session")
def database(migrated_url: str) -> Iterator[Database]:
    # One pool for the session, as a Lambda container keeps one across invocations.
    with Database(migrated_url, max_size=8) as opened:
        yield opened


@pytest.fixture
def store(database: Database) -> Store:
    return Store(database)


@pytest.fixture
def outbox_store(database: Database) -> OutboxStore:
    return OutboxStore(database)


@pytest.fixture
def subscriptions(database: Database) -> SubscriptionStore:
    return SubscriptionStore(database)


@pytest.fixture
def account_store(database: Database) -> AccountStore:
    return AccountStore(database)


@pytest.fixture
def make_key(database: Database) -> Callable[..., IssuedKey]:
    """A new API key, for a new account unless `account` names one."""

    def factory(account: str | None = None) -> IssuedKey:
        name = f"test-{uuid.uuid4().hex[:10]}"
        return Accounts(AccountStore(database)).create_key(name, account=account)

    return factory


@pytest.fixture(scope="session")
def store_key(database: Database) -> IssuedKey:
    """The key of the account the store-level tests place their orders for."""
    return Accounts(AccountStore(database)).create_key(f"store-tests-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def account_id(store_key: IssuedKey) -> str:
    """The account the store-level tests place their orders for."""
    return store_key.info.account_id


@pytest.fixture
def open_connection(database: Database, store_key: IssuedKey) -> Callable[[], str]:
    """A new WebSocket connection id, opened (as $connect does) under the store-level
    tests' key, so it may subscribe to their orders."""
    caller = Accounts(AccountStore(database)).authenticate(store_key.key)

    def factory() -> str:
        connection = f"conn-{uuid.uuid4()}"
        SubscriptionStore(database).add_connection(connection, caller=caller)
        return connection

    return factory


@pytest.fixture
def make_database(migrated_url: str) -> Iterator[Callable[..., Database]]:
    """Extra databases with pools of their own (separate connections), closed afterwards."""
    opened: list[Database] = []

    def factory(url: str | None = None, **kwargs: Any) -> Database:
        new = Database(url or migrated_url, **kwargs)
        opened.append(new)
        return new

    yield factory
    for each in opened:
        each.close()


@pytest.fixture
def outbox_of(migrated_url: str) -> Callable[[uuid.UUID], list[OutboxRow]]:
    """Every outbox row of an order, oldest first, read from the table."""
    return functools.partial(outbox_rows, migrated_url)


@pytest.fixture
def db(migrated_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain autocommit connection, to arrange situations (age a row) and to look
    at tables directly."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def fresh_database_url(database_url: str) -> Iterator[str]:
    """A brand-new, empty database on the session's server."""
    with _fresh_database(database_url) as url:
        yield url


@pytest.fixture
def other_fresh_database_url(database_url: str) -> Iterator[str]:
    """A second brand-new, empty database, for a test that moves between two."""
    with _fresh_database(database_url) as url:
        yield url


@contextmanager
def _fresh_database(database_url: str) -> Iterator[str]:
    name = f"order_engine_fresh_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield psycopg.conninfo.make_conninfo(database_url, dbname=name)
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _order_request(amount: str = "1.5", pair: tuple[str, str] = ("SOL", "USDC")) -> OrderRequest:
    return validate_order_request(
        {"type": "market", "tokenIn": pair[0], "tokenOut": pair[1], "amount": amount}
    )


def _step_messages(order_id: uuid.UUID, to_status: Status) -> list[OutboxMessage]:
    # What a real transition writes: a notification, and the next step's message.
    return [
        OutboxMessage("notify", {"orderId": str(order_id)}, f"{order_id}:notify:{to_status}"),
        OutboxMessage(
            "step", {"orderId": str(order_id), "to": to_status}, f"{order_id}:step:{to_status}"
        ),
    ]


@pytest.fixture
def make_request() -> Callable[..., OrderRequest]:
    """A valid market-order request (SOL -> USDC unless told otherwise)."""
    return _order_request


@pytest.fixture
def messages_for() -> Callable[[uuid.UUID, Status], list[OutboxMessage]]:
    """The outbox messages of a transition into a status: notify + next step."""
    return _step_messages


@pytest.fixture
def new_order(store: Store, account_id: str) -> Callable[..., Order]:
    """Place a fresh pending order, born with its two outbox rows."""

    def factory(amount: str = "1.5") -> Order:
        order_id = uuid.uuid4()
        created = store.create_order(
            order_id,
            _order_request(amount),
            account_id=account_id,
            outbox=_step_messages(order_id, Status.PENDING),
        )
        return created.order

    return factory


@pytest.fixture
def advance(store: Store) -> Callable[[uuid.UUID, Sequence[Status]], None]:
    """Walk an order along `path` (starting at its current status); each step must apply."""

    def walk(order_id: uuid.UUID, path: Sequence[Status]) -> None:
        for from_status, to_status in itertools.pairwise(path):
            result = store.transition(
                order_id,
                from_status,
                to_status,
                changes={"failure_reason": "test"} if to_status is Status.FAILED else None,
                outbox=_step_messages(order_id, to_status),
            )
            assert result.applied, (from_status, to_status, result.outcome)

    return walk
