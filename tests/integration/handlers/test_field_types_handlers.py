"""Every field of an order, given a value of the wrong type or a spelling that is not a
plain decimal, is refused with 422 naming that field, over HTTP and over the WebSocket
`execute` action; generated bodies of any shape never get a 5xx; and a revoked key's
socket is refused everything, a ping too."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from order_engine.order_request import FIELDS
from order_engine.wiring import reset_engine
from tests.support.events import new_connection_id, ws_connect_event, ws_message_event
from tests.support.handler_stack import ORDER, Stack, bearer

# What each field is not: a value of every JSON type the field does not take.
WRONG_TYPES: dict[str, list[Any]] = {
    "type": [{}, [], ["market"], {"market": 1}, 1, 1.5, True, False],
    "tokenIn": [{}, [], ["SOL"], {"SOL": 1}, 1, 1.5, True],
    "tokenOut": [{}, [], ["USDC"], {"USDC": 1}, 1, 1.5, True],
    "amount": [{}, [], ["1"], {"$gt": 0}, True, False],
    "slippageBps": [{}, [], [100], {"bps": 100}, True, "100", "1_0"],
}
# A decimal string is ASCII digits with at most one point: Decimal() alone takes these.
NOT_PLAIN_DECIMALS = [
    "1_5",
    "1__5",
    "\uff11\uff12",  # full-width 12
    "\u0661\u0662",  # Arabic-Indic 12
    "\u0967",  # Devanagari 1
    " 2",
    "2\n",
    "+2",
    "1e2",
    "1.2.3",
    ".5",
]
CASES = [(name, value) for name, values in WRONG_TYPES.items() for value in values] + [
    ("amount", spelling) for spelling in NOT_PLAIN_DECIMALS
]
CASE_IDS = [f"{name}={json.dumps(value)}" for name, value in CASES]


def test_the_table_covers_every_field() -> None:
    assert set(WRONG_TYPES) == FIELDS


@pytest.fixture
def unlimited(fresh: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack with no rate limit: these tests send hundreds of requests a minute."""
    monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", "0")
    reset_engine()
    yield fresh
    monkeypatch.delenv("RATE_LIMIT_PER_MINUTE")
    reset_engine()


@pytest.fixture
def http(unlimited: Stack) -> Iterator[Client]:
    with Client(unlimited.api.app) as client:
        yield client


def post(http: Client, stack: Stack, body: str) -> tuple[int, Any]:
    response = http.http.post(
        "/api/orders/execute",
        headers={"Content-Type": "application/json", **bearer(stack.api_key)},
        body=body,
    )
    return response.status_code, json.loads(response.body)


def connected(stack: Stack) -> str:
    connection = new_connection_id()
    answer = stack.websocket.connect(ws_connect_event(connection, {"apiKey": stack.api_key}), None)
    assert answer["statusCode"] == 200
    return connection


def execute_raw(stack: Stack, connection: str, order_json: str) -> dict[str, Any]:
    """Send `execute` with `order_json` as its order; the first reply."""
    before = len(stack.management.messages(connection))
    body = '{"action":"execute","order":' + order_json + "}"
    stack.websocket.message(ws_message_event(connection, body), None)
    reply: dict[str, Any] = stack.management.messages(connection)[before]
    return reply


@pytest.mark.parametrize(("name", "value"), CASES, ids=CASE_IDS)
def test_a_field_of_the_wrong_type_answers_422_naming_it_over_http(
    unlimited: Stack, http: Client, name: str, value: Any
) -> None:
    status, body = post(http, unlimited, json.dumps({**ORDER, name: value}))
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        422,
        "validation_error",
        name,
    )


@pytest.mark.parametrize(("name", "value"), CASES, ids=CASE_IDS)
def test_a_field_of_the_wrong_type_is_refused_naming_it_over_the_socket(
    unlimited: Stack, name: str, value: Any
) -> None:
    reply = execute_raw(unlimited, connected(unlimited), json.dumps({**ORDER, name: value}))
    assert reply["type"] == "error"
    assert (reply["error"]["code"], reply["error"]["field"]) == ("validation_error", name)


# --- any body at all ---------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)
AMOUNT_TEXT = st.text(alphabet="0123456789._+-eE \uff11\u0661\u0967", min_size=1, max_size=8)
FIELD_VALUES = {
    "type": st.just("market") | JSON_VALUES,
    "tokenIn": st.sampled_from(["SOL", "usdc", "So11111111111111111111111111111111111111112"])
    | JSON_VALUES,
    "tokenOut": st.sampled_from(["USDC", "sol", "BONK"]) | JSON_VALUES,
    "amount": st.sampled_from(["1.5", "0.01", "3"]) | AMOUNT_TEXT | JSON_VALUES,
    "slippageBps": st.integers(min_value=-10, max_value=2000) | JSON_VALUES,
}
ORDERS = st.fixed_dictionaries({}, optional=FIELD_VALUES).flatmap(
    lambda order: st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=1).map(
        lambda extra: {**extra, **order}
    )
)
BODIES = st.one_of(ORDERS, ORDERS, ORDERS, JSON_VALUES)
REQUEST_ERRORS = {
    "bad_request",
    "malformed_request",
    "validation_error",
    "payload_too_large",
}
# Fixed seed and a bounded number of examples: the same bodies on every run, in seconds.
PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@seed(20261204)
@PROPERTY_SETTINGS
@given(body=BODIES)
def test_no_order_body_gets_a_5xx_over_http(unlimited: Stack, http: Client, body: Any) -> None:
    status, answer = post(http, unlimited, json.dumps(body))
    assert status in (202, 400, 422), answer
    if status != 202:
        assert answer["error"]["code"] in REQUEST_ERRORS
        assert answer["error"]["message"]
    if status == 422:  # a field of the schema, or the unknown one sent
        assert answer["error"]["field"] in FIELDS | set(body)


@seed(20261204)
@PROPERTY_SETTINGS
@given(body=BODIES)
def test_no_order_body_breaks_the_socket_execute(unlimited: Stack, body: Any) -> None:
    reply = execute_raw(unlimited, connected(unlimited), json.dumps(body))
    if reply["type"] == "accepted":
        uuid.UUID(reply["orderId"])
    else:
        assert reply["type"] == "error", reply
        assert reply["error"]["code"] in REQUEST_ERRORS, reply


# --- a revoked key's socket ---------------------------------------------------------------


def test_a_revoked_keys_socket_gets_no_pong(fresh: Stack) -> None:
    issued = fresh.engine.accounts.create_key(f"revoked-{uuid.uuid4().hex[:10]}")
    connection = new_connection_id()
    fresh.websocket.connect(ws_connect_event(connection, {"apiKey": issued.key}), None)
    fresh.websocket.message(ws_message_event(connection, {"action": "ping"}), None)
    fresh.engine.accounts.revoke_key(issued.info.prefix)

    for body in ({"action": "ping"}, {"action": "teleport"}, "{"):
        fresh.websocket.message(ws_message_event(connection, body), None)

    replies = fresh.management.messages(connection)
    assert replies[0] == {"type": "pong"}  # while the key lived
    assert [reply["type"] for reply in replies[1:]] == ["error"] * 3
    assert {reply["error"]["code"] for reply in replies[1:]} == {"unauthorized"}
