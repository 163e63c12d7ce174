"""docs/openapi.yaml describes the HTTP API exactly as built: the same routes, the same
request rules as order_request.py, the engine's tokens, statuses and error codes, and
the shapes the real handler answers with (driven in-process over a fake store)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from chalice.test import Client
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from order_engine import errors, order_request, wiring
from order_engine.accounts import Caller, hash_key, key_prefix, new_key
from order_engine.dex.router import RouteDecision, Router
from order_engine.dex.simulation import simulated_venues
from order_engine.errors import IdempotencyConflict, InfrastructureError
from order_engine.order_list import MAX_PAGE_SIZE, PARAMETERS, OrderPage, PageRequest
from order_engine.order_request import OrderRequest
from order_engine.orders import CANCELLABLE, HAPPY_PATH, Status
from order_engine.records import CreatedOrder, Order, OrderEvent, Outcome, TransitionResult
from order_engine.service import MAX_IDEMPOTENCY_KEY_CHARS
from order_engine.settings import DexSettings, Settings
from order_engine.tokens import TOKENS, get_token
from tests.support.functions import load_function_module

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "openapi.yaml"
DOC_URI = "urn:order-engine:openapi"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
WS_URL = "wss://abcdef1234.execute-api.us-east-1.amazonaws.com/v1"


# --- the document -----------------------------------------------------------------------


@cache
def document() -> dict[str, Any]:
    loaded = yaml.safe_load(DOCUMENT.read_text())
    assert isinstance(loaded, dict)
    return loaded


def resolve(node: Any) -> Any:
    """Follow local `$ref`s ("#/components/…") until a node without one."""
    while isinstance(node, dict) and "$ref" in node:
        pointer = node["$ref"]
        assert pointer.startswith("#/"), f"only local references: {pointer}"
        node = document()
        for part in pointer[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def schema(name: str) -> dict[str, Any]:
    found: dict[str, Any] = document()["components"]["schemas"][name]
    return found


@cache
def _registry() -> Registry:
    return Registry().with_resource(DOC_URI, DRAFT202012.create_resource(document()))


def _absolute(node: Any) -> Any:
    """`node` with its local refs ("#/…") pointing into the registered document."""
    if isinstance(node, dict):
        return {
            key: DOC_URI + value
            if key == "$ref" and isinstance(value, str) and value.startswith("#")
            else _absolute(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_absolute(item) for item in node]
    return node


def validator_for(node: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator (OpenAPI 3.1's dialect) for a schema of the
    document, inline or referenced."""
    return Draft202012Validator(
        _absolute(node),
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def assert_valid(instance: Any, node: dict[str, Any], what: str) -> None:
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator_for(node).iter_errors(instance)
    ]
    assert not problems, f"{what}:\n" + "\n".join(problems)


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method.upper(), operation


def operation(path: str, method: str) -> dict[str, Any]:
    found: dict[str, Any] = document()["paths"][path][method.lower()]
    return found


def properties(node: dict[str, Any]) -> set[str]:
    """Property names a schema declares, through allOf and refs."""
    node = resolve(node)
    names = set(node.get("properties", {}))
    for part in node.get("allOf", []):
        names |= properties(part)
    return names


# --- the app ------------------------------------------------------------------------------


@cache
def functions_module(name: str) -> ModuleType:
    """functions/<name>.py as Lambda imports it (by file)."""
    return load_function_module(name, f"_openapi_test_functions_{name}")


def http_edge() -> ModuleType:
    return functions_module("http_edge")


def api_module() -> ModuleType:
    return functions_module("api")


# The Chalice apps behind the HTTP API: the API itself, and the dashboard's page.
HTTP_APPS = ("api", "dashboard")


def route_entries() -> dict[tuple[str, str], Any]:
    return {
        (path, method): entry
        for name in HTTP_APPS
        for path, entries in functions_module(name).app.routes.items()
        for method, entry in entries.items()
    }


def chalice_routes() -> set[tuple[str, str]]:
    return set(route_entries())


# --- routes and validity -------------------------------------------------------------


def test_every_chalice_route_is_documented_and_every_documented_operation_is_a_route() -> None:
    documented = {(path, method) for path, method, _ in operations()}
    assert documented == chalice_routes()


def test_path_parameters_are_named_as_the_handler_arguments() -> None:
    routes = route_entries()
    for path, method, op in operations():
        in_path = {p["name"] for p in map(resolve, op.get("parameters", [])) if p["in"] == "path"}
        assert in_path == set(re.findall(r"\{(\w+)\}", path)), f"{method} {path}"
        assert in_path == set(routes[path, method].view_args), f"{method} {path}"


def test_the_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    assert document()["openapi"].startswith("3.1.")
    validator.validate(document())


def test_every_example_matches_its_schema() -> None:
    checked = 0
    for path, method, op in operations():
        media = [("request", op.get("requestBody", {}).get("content", {}))]
        for status, response in op["responses"].items():
            media.append((status, resolve(response).get("content", {})))
        for where, content in media:
            for media_type, body in content.items():
                for name, example in body.get("examples", {}).items():
                    value = resolve(example)["value"]
                    assert_valid(value, body["schema"], f"{method} {path} {where} {name}")
                    checked += 1
                    if where == "request" and media_type == "application/json":
                        order_request.validate_order_request(value)  # the engine agrees
    assert checked >= 10


# --- the request schema against order_request.py ---------------------------------------


def test_request_schema_has_exactly_the_validator_fields_and_no_others() -> None:
    request = schema("OrderRequest")
    assert set(request["properties"]) == order_request.FIELDS | order_request.LIMIT_FIELDS
    assert request["additionalProperties"] is False
    assert set(request["required"]) == order_request.FIELDS - {"slippageBps"}
    assert set(request["properties"]["type"]["enum"]) == order_request.ORDER_TYPES


def test_request_schema_slippage_bounds_and_default_match_the_validator() -> None:
    slippage = schema("OrderRequest")["properties"]["slippageBps"]
    assert slippage["type"] == "integer"
    assert slippage["minimum"] == order_request.MIN_SLIPPAGE_BPS
    assert slippage["maximum"] == order_request.MAX_SLIPPAGE_BPS
    assert slippage["default"] == order_request.DEFAULT_SLIPPAGE_BPS


def test_request_schema_amount_is_a_string_or_a_positive_number() -> None:
    amount = schema("OrderRequest")["properties"]["amount"]
    kinds = {option["type"]: option for option in amount["anyOf"]}
    assert set(kinds) == {"string", "number"}
    assert kinds["string"]["maxLength"] == order_request.MAX_SCALAR_CHARS
    assert kinds["number"]["exclusiveMinimum"] == 0
    assert schema("TokenName")["maxLength"] == order_request.MAX_SCALAR_CHARS


def test_idempotency_key_and_body_limits_match_the_service() -> None:
    execute = operation("/api/orders/execute", "POST")
    (key,) = (p for p in map(resolve, execute["parameters"]) if p["name"] == "Idempotency-Key")
    assert key["in"] == "header"
    assert key["required"] is False
    assert (key["schema"]["minLength"], key["schema"]["maxLength"]) == (
        1,
        MAX_IDEMPOTENCY_KEY_CHARS,
    )
    limit = f"{http_edge().MAX_BODY_BYTES:,}".replace(",", " ")
    assert limit in execute["requestBody"]["description"]
    assert limit in resolve(execute["responses"]["413"])["description"]


def test_documented_tokens_are_the_engine_tokens() -> None:
    symbols = schema("TokenSymbol")
    assert symbols["enum"] == [token.symbol for token in TOKENS]
    for token in TOKENS:
        row = f"| {token.symbol} | `{token.mint}` | {token.decimals} | {token.max_amount} |"
        assert row in symbols["description"], f"the token table disagrees on {token.symbol}"


def test_documented_statuses_and_venues_are_the_engine_ones() -> None:
    assert schema("OrderStatus")["enum"] == [status.value for status in Status]
    venues = simulated_venues(DexSettings(latency_scale=0, seed=1))
    assert set(schema("Venue")["enum"]) == {venue.name for venue in venues}


def documented_error_codes() -> Iterator[tuple[str, str, int, str]]:
    """(method, path, status, code) for every error response that pins its code."""

    def consts(node: Any) -> Iterator[str]:
        node = resolve(node)
        if isinstance(node, dict):
            code = node.get("properties", {}).get("error", {}).get("properties", {}).get("code")
            if code and "const" in code:
                yield code["const"]
            for part in node.get("allOf", []):
                yield from consts(part)

    for path, method, op in operations():
        for status, response in op["responses"].items():
            for body in resolve(response).get("content", {}).values():
                for code in consts(body["schema"]):
                    yield method, path, int(status), code


def test_documented_error_codes_are_the_engine_errors_with_their_statuses() -> None:
    by_code = {
        cls.code: cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.OrderEngineError)
    }
    seen = set()
    for method, path, status, code in documented_error_codes():
        assert code in by_code, f"{method} {path} {status}: no engine error has code {code!r}"
        # functions/http_edge.py decides every error's status.
        expected = http_edge().status_of(by_code[code])
        assert status == expected, f"{method} {path}: {code} is {expected}, documented {status}"
        seen.add(code)
    assert seen == {
        "malformed_request",
        "idempotency_conflict",
        "payload_too_large",
        "validation_error",
        "not_found",
        "not_cancellable",
        "unauthorized",
        "rate_limited",
        "infrastructure_unavailable",
    }


def test_the_order_operations_need_the_api_key_and_health_does_not() -> None:
    scheme = document()["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    api_routes = {
        (path, method) for path, entries in api_module().app.routes.items() for method in entries
    }
    for path, method, op in operations():
        if (path, method) not in api_routes:
            continue
        needs_key = path != "/health"
        assert (op.get("security") == [{"apiKey": []}]) is needs_key, f"{method} {path}"
        assert ("401" in op["responses"]) is needs_key, f"{method} {path}"
    assert "429" in operation("/api/orders/execute", "POST")["responses"]


# --- real responses against the document --------------------------------------------------


NOW = datetime(2026, 11, 25, 12, 53, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def route() -> RouteDecision:
    with Router(simulated_venues(DexSettings(latency_scale=0, seed=7)), quote_timeout=1) as r:
        return r.route(get_token("SOL"), get_token("USDC"), Decimal("1.5"), 100)


def make_order(route: RouteDecision | None, **changes: Any) -> Order:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "status": Status.PENDING,
        "version": 1,
        "type": "market",
        "token_in": get_token("SOL"),
        "token_out": get_token("USDC"),
        "amount": Decimal("1.5"),
        "slippage_bps": 100,
        "request": {},
        "route": None if route is None else route.to_dict(),
        "transaction": None,
        "tx_signature": None,
        "amount_out": None,
        "executed_price": None,
        "attempts": 0,
        "last_error": None,
        "failure_reason": None,
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(changes)
    return Order(**values)


def confirmed_order(route: RouteDecision) -> tuple[Order, list[OrderEvent]]:
    order = make_order(
        route,
        status=Status.CONFIRMED,
        version=5,
        tx_signature="5FWbxrj42vbKBHbDJpUA1ppRekSqfq9uBtf2ATs2HCaUvhtxVe39jzdhqf28wcNGb81YGdd5V",
        amount_out=Decimal("228.397574"),
        executed_price=Decimal("152.265049333333"),
        updated_at=NOW + timedelta(seconds=3),
    )
    path = list(HAPPY_PATH)
    events = [
        OrderEvent(
            order_id=order.id,
            seq=seq,
            from_status=path[seq - 2] if seq > 1 else None,
            to_status=status,
            data={} if status is Status.PENDING else {"attempts": 1},
            created_at=NOW + timedelta(milliseconds=seq),
        )
        for seq, status in enumerate(path, 1)
    ]
    return order, events


API_KEY = new_key()
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CALLER = Caller(
    account_id=str(uuid.uuid4()), account_name="docs", key_prefix=key_prefix(API_KEY) or ""
)


@dataclass
class FakeStore:
    """The store calls OrderService and Accounts make, in memory; `down` makes each one
    fail, `limited` makes the rate limiter's counter full. API_KEY is the only key."""

    orders: dict[uuid.UUID, tuple[Order, list[OrderEvent]]] = field(default_factory=dict)
    replay: Order | None = None
    conflict: bool = False
    down: bool = False
    limited: bool = False

    def _check(self) -> None:
        if self.down:
            raise InfrastructureError("database unavailable: connection refused")

    def caller_for_key(self, key_hash: bytes, *, connection: object = None) -> Caller | None:
        self._check()
        return CALLER if key_hash == hash_key(API_KEY) else None

    def count_request(self, key_prefix: str, window_seconds: int) -> tuple[int, float]:
        self._check()
        return (1_000_000 if self.limited else 1), 17.2

    def caller_for_key_counted(
        self, key_hash: bytes, window_seconds: int
    ) -> tuple[Caller, int, float] | None:
        caller = self.caller_for_key(key_hash)
        return None if caller is None else (caller, *self.count_request("", window_seconds))

    def create_order(
        self,
        order_id: str,
        request: OrderRequest,
        *,
        account_id: str,
        outbox: Any,
        idempotency_key: str | None,
    ) -> CreatedOrder:
        self._check()
        if self.conflict:
            raise IdempotencyConflict("used with a different request", field="Idempotency-Key")
        if self.replay is not None:
            return CreatedOrder(order=self.replay, created=False)
        return CreatedOrder(order=make_order(None), created=True)

    def get_order(self, order_id: uuid.UUID, *, account_id: str | None = None) -> Order | None:
        self._check()
        found = self.orders.get(order_id)
        return None if found is None else found[0]

    def get_events(self, order_id: uuid.UUID, *, after_seq: int = 0) -> list[OrderEvent]:
        self._check()
        return self.orders[order_id][1]

    def cancel(self, order_id: uuid.UUID, *, account_id: str, outbox: Any) -> TransitionResult:
        self._check()
        found = self.orders.get(order_id)
        if found is None:
            return TransitionResult(Outcome.NOT_FOUND, None)
        order = found[0]
        if order.status not in CANCELLABLE:
            return TransitionResult(Outcome.ILLEGAL, order)
        cancelled = make_order(None, id=order.id, status=Status.CANCELLED, version=2)
        return TransitionResult(Outcome.APPLIED, cancelled)

    def page(self, account_id: str, request: PageRequest) -> OrderPage:
        self._check()
        listed = [order for order, _ in self.orders.values()][: request.limit]
        return OrderPage(listed, None)

    def ping(self) -> None:
        self._check()

    @property
    def database(self) -> FakeStore:  # the health check pings the store's database
        return self

    def mark_sent(self, ids: Any) -> None:
        self._check()


class FakePublisher:
    def check(self) -> None:
        pass

    def publish(self, rows: Any) -> list[int]:
        return []


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    """The real OrderService (validation, error mapping, to_dict) over a fake store."""
    fake = FakeStore()

    class FakeEngine(wiring.Engine):
        """The engine's own wiring, over the fake repositories and publisher."""

        store = outbox_store = subscriptions = account_store = order_list = property(
            lambda self: fake
        )
        publisher = property(lambda self: FakePublisher())

    monkeypatch.setattr(wiring, "_engine", FakeEngine(Settings(websocket_url=WS_URL)))
    return fake


@pytest.fixture
def http(store: FakeStore) -> Iterator[Client]:
    with Client(api_module().app) as client:
        yield client


def assert_documented(
    response: Any, path: str, method: str, status: int
) -> tuple[dict[str, Any], Any]:
    """The response has `status`, which the document lists, and matches its schema."""
    assert response.status_code == status, response.body
    documented = operation(path, method)["responses"]
    assert str(status) in documented, f"{method} {path} answers {status}, not documented"
    content = resolve(documented[str(status)])["content"]
    body = json.loads(response.body)
    assert_valid(body, content["application/json"]["schema"], f"{method} {path} {status}")
    return resolve(documented[str(status)]), body


ORDER = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}
EXECUTE = "/api/orders/execute"
JSON_TYPE = {"Content-Type": "application/json"}


def post(http: Client, body: str, headers: dict[str, str] | None = None) -> Any:
    return http.http.post(EXECUTE, headers={**JSON_TYPE, **AUTH, **(headers or {})}, body=body)


def test_an_accepted_order_answers_as_documented(http: Client) -> None:
    _, body = assert_documented(post(http, json.dumps(ORDER)), EXECUTE, "POST", 202)
    assert body["wsUrl"] == f"{WS_URL}?orderId={body['orderId']}"


def test_an_idempotent_replay_answers_with_the_documented_header(
    http: Client, store: FakeStore
) -> None:
    store.replay = make_order(None, status=Status.ROUTING)
    response = post(http, json.dumps(ORDER), {"Idempotency-Key": "k-1"})
    documented, _ = assert_documented(response, EXECUTE, "POST", 202)
    (header,) = documented["headers"]
    assert response.headers[header] == resolve(documented["headers"][header])["schema"]["const"]


def test_a_fresh_order_has_no_replay_header(http: Client) -> None:
    response = post(http, json.dumps(ORDER), {"Idempotency-Key": "k-2"})
    assert "Idempotent-Replayed" not in response.headers


@pytest.mark.parametrize(
    ("case", "body", "headers", "status", "code"),
    [
        ("not JSON", "{bad", {}, 400, "malformed_request"),
        ("not an object", "[1]", {}, 400, "malformed_request"),
        (
            "too large",
            json.dumps({**ORDER, "pad": "x" * http_edge().MAX_BODY_BYTES}),
            {},
            413,
            None,
        ),
        ("slippage too high", json.dumps({**ORDER, "slippageBps": 1001}), {}, 422, None),
        ("slippage zero", json.dumps({**ORDER, "slippageBps": 0}), {}, 422, None),
        ("unknown field", json.dumps({**ORDER, "price": 1}), {}, 422, None),
        ("type limit", json.dumps({**ORDER, "type": "limit"}), {}, 422, None),
        ("key too long", json.dumps(ORDER), {"Idempotency-Key": "k" * 201}, 422, None),
        ("text/plain", json.dumps(ORDER), {"Content-Type": "text/plain"}, 415, None),
    ],
)
def test_bad_requests_answer_as_documented(
    http: Client, case: str, body: str, headers: dict[str, str], status: int, code: str | None
) -> None:
    _, answer = assert_documented(post(http, body, headers), EXECUTE, "POST", status)
    if code is not None:
        assert answer["error"]["code"] == code, case


def test_the_largest_documented_slippage_and_key_are_accepted(http: Client) -> None:
    body = json.dumps({**ORDER, "slippageBps": order_request.MAX_SLIPPAGE_BPS})
    response = post(http, body, {"Idempotency-Key": "k" * MAX_IDEMPOTENCY_KEY_CHARS})
    assert_documented(response, EXECUTE, "POST", 202)


def test_an_idempotency_conflict_and_a_database_outage_answer_as_documented(
    http: Client, store: FakeStore
) -> None:
    store.conflict = True
    assert_documented(post(http, json.dumps(ORDER), {"Idempotency-Key": "k"}), EXECUTE, "POST", 409)
    store.conflict, store.down = False, True
    assert_documented(post(http, json.dumps(ORDER)), EXECUTE, "POST", 503)


GET_ORDER = "/api/orders/{order_id}"


def test_a_stored_order_answers_with_the_documented_shape(
    http: Client, store: FakeStore, route: RouteDecision
) -> None:
    order, events = confirmed_order(route)
    store.orders[order.id] = (order, events)
    response = http.http.get(f"/api/orders/{order.id}", headers=AUTH)
    _, body = assert_documented(response, GET_ORDER, "GET", 200)
    assert body["route"]["venue"] == route.venue
    assert [event["seq"] for event in body["events"]] == [1, 2, 3, 4, 5]


def test_unknown_malformed_and_unreachable_orders_answer_as_documented(
    http: Client, store: FakeStore
) -> None:
    unknown = http.http.get(f"/api/orders/{uuid.uuid4()}", headers=AUTH)
    assert_documented(unknown, GET_ORDER, "GET", 404)
    # A malformed id is a 422 naming the field `id` (ValidationError), not a 400.
    malformed = http.http.get("/api/orders/not-a-uuid", headers=AUTH)
    _, body = assert_documented(malformed, GET_ORDER, "GET", 422)
    assert body["error"]["field"] == "id"
    store.down = True
    unreachable = http.http.get(f"/api/orders/{uuid.uuid4()}", headers=AUTH)
    assert_documented(unreachable, GET_ORDER, "GET", 503)


@pytest.mark.parametrize(
    "authorization",
    ["", "Basic dXNlcjpwYXNz", f"Bearer {new_key()}", "Bearer oe_live_not_a_key"],
    ids=["none", "another scheme", "unknown key", "malformed key"],
)
def test_a_missing_or_bad_key_answers_as_documented(http: Client, authorization: str) -> None:
    headers = {"Authorization": authorization}
    for path, method, response in (
        (EXECUTE, "POST", post(http, json.dumps(ORDER), headers)),
        (GET_ORDER, "GET", http.http.get(f"/api/orders/{uuid.uuid4()}", headers=headers)),
    ):
        documented, body = assert_documented(response, path, method, 401)
        assert body["error"]["code"] == "unauthorized"
        (header,) = documented["headers"]
        pattern = resolve(documented["headers"][header])["schema"]["pattern"]
        assert re.match(pattern, response.headers[header]), response.headers


def test_a_rate_limited_key_answers_as_documented(http: Client, store: FakeStore) -> None:
    store.limited = True
    response = post(http, json.dumps(ORDER))
    documented, body = assert_documented(response, EXECUTE, "POST", 429)
    (header,) = documented["headers"]
    retry_after = int(response.headers[header])
    assert_valid(retry_after, resolve(documented["headers"][header])["schema"], header)
    assert body["error"] == {
        "code": "rate_limited",
        "message": body["error"]["message"],
        "retryAfter": retry_after,
    }


def test_the_dashboard_answers_with_its_page_as_documented() -> None:
    with Client(functions_module("dashboard").app) as client:
        response = client.http.get("/")
        assert response.status_code == 200
        documented = operation("/", "GET")["responses"]
        (media_type,) = documented["200"]["content"]
        assert response.headers["Content-Type"].split(";")[0] == media_type == "text/html"
        assert response.body.decode().startswith("<!doctype html>")
        # Chalice's own 415 applies to every route, this one included.
        refused = client.http.get("/", headers={"Content-Type": "text/plain"})
        assert refused.status_code == 415 and "415" in documented
        assert_valid(
            json.loads(refused.body),
            resolve(documented["415"])["content"]["application/json"]["schema"],
            "GET / 415",
        )


def test_health_answers_as_documented(http: Client, store: FakeStore) -> None:
    _, body = assert_documented(http.http.get("/health"), "/health", "GET", 200)
    assert body == {"status": "ok", "checks": {"postgres": "ok", "sqs": "ok"}}
    store.down = True
    _, body = assert_documented(http.http.get("/health"), "/health", "GET", 503)
    assert body["checks"]["postgres"].startswith("down: ")


def test_documented_response_properties_are_exactly_what_the_engine_writes(
    route: RouteDecision,
) -> None:
    """A field added to a to_dict() (or dropped from it) must be documented."""
    order, events = confirmed_order(route)
    decision = order.to_dict()["route"]  # as answered, not as stored
    outcome = decision["quotes"][0]
    assert properties(schema("Order")) == set(order.to_dict())
    assert properties(schema("OrderDetails")) == set(order.to_dict()) | {"events", "bestPrice"}
    assert properties(schema("OrderEvent")) == set(events[0].to_dict())
    assert properties(schema("RouteDecision")) == set(decision)
    assert properties(schema("Quote")) == set(decision["quote"])
    assert properties(schema("QuoteOutcome")) == set(outcome)
    assert set(schema("Order")["required"]) == set(order.to_dict())


LIST = "/api/orders"


def test_the_list_parameters_are_the_services() -> None:
    documented = {p["name"]: p for p in map(resolve, operation(LIST, "GET")["parameters"])}
    assert set(documented) == set(PARAMETERS)
    assert documented["limit"]["schema"]["maximum"] == MAX_PAGE_SIZE
    assert set(documented["type"]["schema"]["enum"]) == order_request.ORDER_TYPES
    assert schema("OrderPage")["properties"]["orders"]["maxItems"] == MAX_PAGE_SIZE


def test_a_page_of_orders_answers_as_documented(
    http: Client, store: FakeStore, route: RouteDecision
) -> None:
    order, events = confirmed_order(route)
    store.orders[order.id] = (order, events)
    response = http.http.get(f"{LIST}?limit=5&status=confirmed", headers=AUTH)
    _, body = assert_documented(response, LIST, "GET", 200)
    assert [listed["id"] for listed in body["orders"]] == [str(order.id)]


@pytest.mark.parametrize(
    "query", [f"limit={MAX_PAGE_SIZE + 1}", "status=done", "type=stop", "cursor=x", "page=2"]
)
def test_a_bad_list_parameter_answers_as_documented(http: Client, query: str) -> None:
    assert_documented(http.http.get(f"{LIST}?{query}", headers=AUTH), LIST, "GET", 422)


def test_cancelling_answers_as_documented(http: Client, store: FakeStore) -> None:
    pending = make_order(None)
    building = make_order(None, status=Status.BUILDING)
    store.orders[pending.id] = (pending, [])
    store.orders[building.id] = (building, [])

    _, body = assert_documented(
        http.http.delete(f"/api/orders/{pending.id}", headers=AUTH), GET_ORDER, "DELETE", 200
    )
    assert body["status"] == "cancelled"
    _, body = assert_documented(
        http.http.delete(f"/api/orders/{building.id}", headers=AUTH), GET_ORDER, "DELETE", 409
    )
    assert body["error"]["status"] == "building"
    unknown = http.http.delete(f"/api/orders/{uuid.uuid4()}", headers=AUTH)
    assert_documented(unknown, GET_ORDER, "DELETE", 404)
    malformed = http.http.delete("/api/orders/nope", headers=AUTH)
    assert_documented(malformed, GET_ORDER, "DELETE", 422)
