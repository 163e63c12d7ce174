"""Who may see an order, through the real handlers: API keys on HTTP and on WebSocket,
orders visible only to their account, and the per-key rate limit."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from chalice.test import Client

from order_engine.accounts import IssuedKey
from order_engine.wiring import reset_engine
from tests.integration.handlers.test_api_handlers import post, row_counts
from tests.support.events import new_connection_id, ws_connect_event, ws_message_event
from tests.support.handler_stack import ORDER, Stack, bearer


@pytest.fixture
def http(fresh: Stack) -> Iterator[Client]:
    with Client(fresh.api.app) as client:
        yield client


@pytest.fixture
def new_key(fresh: Stack) -> Callable[[], IssuedKey]:
    """A key of a brand-new account."""
    return lambda: fresh.engine.accounts.create_key(f"other-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def rate_limit(fresh: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    """Rebuild the engine with RATE_LIMIT_PER_MINUTE set, as a deployment would."""

    def set_limit(per_minute: int) -> None:
        monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", str(per_minute))
        reset_engine()
        _wait_for_a_fresh_window(fresh)

    yield set_limit
    monkeypatch.delenv("RATE_LIMIT_PER_MINUTE", raising=False)
    reset_engine()


def _wait_for_a_fresh_window(stack: Stack) -> None:
    """Windows are whole minutes of the database's clock: start a burst well inside one,
    so it cannot straddle two."""
    with psycopg.connect(stack.engine.settings.database_url or "") as conn:
        row = conn.execute("SELECT mod(extract(epoch FROM now()), 60)::float8").fetchone()
    assert row is not None
    if row[0] > 55:
        time.sleep(60.5 - row[0])


def get(http: Client, order_id: str, headers: dict[str, str] | None = None) -> Any:
    return http.http.get(f"/api/orders/{order_id}", headers=headers or {})


def place(http: Client, key: str, headers: dict[str, str] | None = None) -> str:
    response = post(http, json.dumps(ORDER), {**bearer(key), **(headers or {})})
    assert response.status_code == 202, response.body
    return str(json.loads(response.body)["orderId"])


def connection_row(url: str, connection_id: str) -> tuple[Any, ...] | None:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT account_id, key_prefix FROM connections WHERE connection_id = %s",
            (connection_id,),
        ).fetchone()


# --- HTTP ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
    ids=["no header", "empty", "another scheme", "no credential"],
)
def test_an_order_without_a_key_is_refused_with_401_and_writes_nothing(
    http: Client, migrated_url: str, headers: dict[str, str]
) -> None:
    before = row_counts(migrated_url)
    response = post(http, json.dumps(ORDER), headers)

    assert response.status_code == 401
    assert json.loads(response.body)["error"]["code"] == "unauthorized"
    assert json.loads(response.body)["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert row_counts(migrated_url) == before


@pytest.mark.parametrize(
    "key",
    [
        "nonsense",
        "oe_live_zzzzzzzz_" + "a" * 43,
        "oe_live_0123abcd_" + "b" * 43,  # well-formed, never issued
    ],
    ids=["garbage", "malformed prefix", "unknown"],
)
def test_a_bad_key_is_refused_with_401_naming_an_invalid_token(
    http: Client, migrated_url: str, key: str
) -> None:
    before = row_counts(migrated_url)
    response = post(http, json.dumps(ORDER), bearer(key))

    assert response.status_code == 401
    assert json.loads(response.body)["error"]["code"] == "unauthorized"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert get(http, str(uuid.uuid4()), bearer(key)).status_code == 401
    assert row_counts(migrated_url) == before


def test_a_revoked_key_is_refused_with_401_on_every_route(
    fresh: Stack, http: Client, migrated_url: str, new_key: Callable[[], IssuedKey]
) -> None:
    issued = new_key()
    order_id = place(http, issued.key)
    fresh.engine.accounts.revoke_key(issued.info.prefix)
    before = row_counts(migrated_url)

    assert post(http, json.dumps(ORDER), bearer(issued.key)).status_code == 401
    assert get(http, order_id, bearer(issued.key)).status_code == 401
    assert row_counts(migrated_url) == before


def test_a_keys_own_order_answers_200(fresh: Stack, http: Client) -> None:
    order_id = place(http, fresh.api_key)
    response = get(http, order_id, fresh.auth)
    assert response.status_code == 200
    assert json.loads(response.body)["id"] == order_id


def test_another_accounts_order_answers_404_exactly_like_an_unknown_one(
    fresh: Stack, http: Client, new_key: Callable[[], IssuedKey]
) -> None:
    theirs = place(http, new_key().key)
    unknown = str(uuid.uuid4())

    other = get(http, theirs, fresh.auth)
    missing = get(http, unknown, fresh.auth)

    assert other.status_code == missing.status_code == 404
    assert json.loads(other.body)["error"] == {
        **json.loads(missing.body)["error"],
        "message": f"order {theirs} not found",
    }


def test_health_needs_no_key(http: Client) -> None:
    assert http.http.get("/health").status_code == 200


def test_the_same_idempotency_key_under_two_accounts_places_two_orders(
    fresh: Stack, http: Client, new_key: Callable[[], IssuedKey]
) -> None:
    shared = {"Idempotency-Key": str(uuid.uuid4())}
    other = new_key().key

    mine = place(http, fresh.api_key, shared)
    theirs = place(http, other, shared)

    assert mine != theirs
    assert place(http, fresh.api_key, shared) == mine  # each still replays its own
    assert place(http, other, shared) == theirs
    assert get(http, theirs, fresh.auth).status_code == 404


def test_a_key_over_its_rate_limit_gets_429_with_retry_after_and_writes_nothing(
    http: Client,
    migrated_url: str,
    new_key: Callable[[], IssuedKey],
    rate_limit: Callable[[int], None],
) -> None:
    rate_limit(2)
    limited, unaffected = new_key().key, new_key().key
    place(http, limited)
    place(http, limited)
    before = row_counts(migrated_url)

    response = post(http, json.dumps(ORDER), bearer(limited))

    assert response.status_code == 429
    assert json.loads(response.body)["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert json.loads(response.body)["error"]["retryAfter"] == int(response.headers["Retry-After"])
    assert row_counts(migrated_url) == before
    place(http, unaffected)  # another key has a budget of its own


def test_the_rate_limit_counts_bad_requests_too(
    http: Client, new_key: Callable[[], IssuedKey], rate_limit: Callable[[int], None]
) -> None:
    rate_limit(1)
    key = new_key().key
    assert post(http, "{", bearer(key)).status_code == 400
    assert post(http, json.dumps(ORDER), bearer(key)).status_code == 429


def test_the_key_comes_before_the_body_size_and_the_rate_limit_and_only_those_count(
    fresh: Stack,
    http: Client,
    migrated_url: str,
    new_key: Callable[[], IssuedKey],
    rate_limit: Callable[[int], None],
) -> None:
    """401, then 413, then 429; neither a key that is not live nor a body too large
    spends the budget (the statement that checks the key counts the request)."""
    rate_limit(1)
    key, revoked = new_key(), new_key()
    fresh.engine.accounts.revoke_key(revoked.info.prefix)
    too_large = json.dumps({**ORDER, "pad": "x" * 20_000})

    assert post(http, json.dumps(ORDER), bearer(revoked.key)).status_code == 401
    assert post(http, too_large, bearer(revoked.key)).status_code == 401
    assert post(http, too_large, bearer(key.key)).status_code == 413
    assert rate_limit_hits(migrated_url, revoked.info.prefix) is None
    assert rate_limit_hits(migrated_url, key.info.prefix) is None

    place(http, key.key)  # the budget of 1 was not spent
    assert rate_limit_hits(migrated_url, key.info.prefix) == 1
    assert post(http, too_large, bearer(key.key)).status_code == 413  # before 429
    assert post(http, json.dumps(ORDER), bearer(key.key)).status_code == 429
    assert rate_limit_hits(migrated_url, key.info.prefix) == 2


def rate_limit_hits(database_url: str, prefix: str) -> int | None:
    """The requests counted in the key's current window; None if none ever were."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT hits FROM rate_limits WHERE key_prefix = %s", (prefix,)
        ).fetchone()
    return None if row is None else int(row[0])


# --- WebSocket ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ({}, {}),
        ({"apiKey": "oe_live_0123abcd_" + "c" * 43}, {}),
        ({}, {"Authorization": "Bearer not-a-key"}),
    ],
    ids=["no key", "unknown key in the query", "bad key in the header"],
)
def test_a_handshake_without_a_valid_key_is_refused_with_401_and_writes_nothing(
    fresh: Stack, migrated_url: str, query: dict[str, str], headers: dict[str, str]
) -> None:
    connection = new_connection_id()
    answer = fresh.websocket.connect(ws_connect_event(connection, query, headers), None)

    assert answer["statusCode"] == 401
    assert json.loads(answer["body"])["error"]["code"] == "unauthorized"
    assert connection_row(migrated_url, connection) is None


@pytest.mark.parametrize("where", ["query", "header"])
def test_a_handshake_with_a_key_records_its_account_on_the_connection(
    fresh: Stack, migrated_url: str, where: str
) -> None:
    connection = new_connection_id()
    if where == "query":
        event = ws_connect_event(connection, {"apiKey": fresh.api_key})
    else:
        event = ws_connect_event(connection, headers={"authorization": f"bearer {fresh.api_key}"})

    assert fresh.websocket.connect(event, None)["statusCode"] == 200
    account_id, prefix = connection_row(migrated_url, connection) or (None, None)
    assert (str(account_id), prefix) == (
        fresh.issued_key.info.account_id,
        fresh.issued_key.info.prefix,
    )


def test_a_handshake_for_another_accounts_order_is_refused_like_an_unknown_one(
    fresh: Stack, http: Client, migrated_url: str, new_key: Callable[[], IssuedKey]
) -> None:
    theirs = place(http, new_key().key)
    before = row_counts(migrated_url)
    connection = new_connection_id()

    answer = fresh.websocket.connect(
        ws_connect_event(connection, {"orderId": theirs, "apiKey": fresh.api_key}), None
    )

    assert answer["statusCode"] == 404
    assert json.loads(answer["body"])["error"]["code"] == "not_found"
    assert connection_row(migrated_url, connection) is None
    assert row_counts(migrated_url) == before


def test_subscribing_to_another_accounts_order_answers_like_an_unknown_order(
    fresh: Stack, http: Client, migrated_url: str, new_key: Callable[[], IssuedKey]
) -> None:
    theirs = place(http, new_key().key)
    connection = new_connection_id()
    fresh.websocket.connect(ws_connect_event(connection, {"apiKey": fresh.api_key}), None)
    before = row_counts(migrated_url)

    for order_id in (theirs, str(uuid.uuid4())):
        subscribe = {"action": "subscribe", "orderId": order_id}
        fresh.websocket.message(ws_message_event(connection, subscribe), None)

    other, unknown = fresh.management.messages(connection)
    assert other["type"] == unknown["type"] == "error"
    assert other["error"]["code"] == unknown["error"]["code"] == "not_found"
    assert fresh.engine.subscriptions.subscribers(theirs) == []
    assert row_counts(migrated_url) == before


def test_execute_on_the_socket_places_the_order_for_the_connections_account(
    fresh: Stack, http: Client, new_key: Callable[[], IssuedKey]
) -> None:
    issued = new_key()
    connection = new_connection_id()
    fresh.websocket.connect(ws_connect_event(connection, {"apiKey": issued.key}), None)

    fresh.websocket.message(
        ws_message_event(connection, {"action": "execute", "order": ORDER}), None
    )

    accepted = fresh.management.messages(connection)[0]
    assert accepted["type"] == "accepted"
    assert get(http, accepted["orderId"], bearer(issued.key)).status_code == 200
    assert get(http, accepted["orderId"], fresh.auth).status_code == 404


def test_a_revoked_keys_connection_can_neither_execute_nor_subscribe(
    fresh: Stack, http: Client, migrated_url: str, new_key: Callable[[], IssuedKey]
) -> None:
    issued = new_key()
    order_id = place(http, issued.key)
    connection = new_connection_id()
    fresh.websocket.connect(ws_connect_event(connection, {"apiKey": issued.key}), None)
    fresh.engine.accounts.revoke_key(issued.info.prefix)
    before = row_counts(migrated_url)

    for body in (
        {"action": "execute", "order": ORDER},
        {"action": "subscribe", "orderId": order_id},
    ):
        fresh.websocket.message(ws_message_event(connection, body), None)

    replies = fresh.management.messages(connection)
    assert [reply["error"]["code"] for reply in replies] == ["unauthorized", "unauthorized"]
    assert row_counts(migrated_url) == before


def test_a_subscribe_is_refused_for_the_connection_before_its_order_is_looked_at(
    fresh: Stack, http: Client, migrated_url: str, new_key: Callable[[], IssuedKey]
) -> None:
    """A well-formed subscribe is checked and written by one statement; which error a
    bad one gets is the same as when the key was checked first: the connection's key,
    then the order id's form, then the order."""
    theirs = place(http, new_key().key)
    mine = fresh.place()
    unknown_connection = new_connection_id()
    live = new_connection_id()
    fresh.websocket.connect(ws_connect_event(live, {"apiKey": fresh.api_key}), None)
    before = row_counts(migrated_url)

    asked = [
        (unknown_connection, mine),
        (unknown_connection, theirs),
        (unknown_connection, str(uuid.uuid4())),
        (unknown_connection, "not-an-id"),
        (live, "not-an-id"),
        (live, theirs),
    ]
    for connection, order_id in asked:
        subscribe = {"action": "subscribe", "orderId": order_id}
        fresh.websocket.message(ws_message_event(connection, subscribe), None)

    codes = [
        reply["error"]["code"]
        for connection in (unknown_connection, live)
        for reply in fresh.management.messages(connection)
    ]
    assert codes == ["unauthorized"] * 4 + ["validation_error", "not_found"]
    assert row_counts(migrated_url) == before


def test_execute_on_the_socket_is_rate_limited_per_key(
    fresh: Stack,
    migrated_url: str,
    new_key: Callable[[], IssuedKey],
    rate_limit: Callable[[int], None],
) -> None:
    rate_limit(1)
    connection = new_connection_id()
    fresh.websocket.connect(ws_connect_event(connection, {"apiKey": new_key().key}), None)
    execute = {"action": "execute", "order": ORDER}
    fresh.websocket.message(ws_message_event(connection, execute), None)
    before = row_counts(migrated_url)

    fresh.websocket.message(ws_message_event(connection, execute), None)

    refused = fresh.management.messages(connection)[-1]
    assert refused["type"] == "error" and refused["error"]["code"] == "rate_limited"
    assert 1 <= refused["error"]["retryAfter"] <= 60
    assert row_counts(migrated_url) == before
