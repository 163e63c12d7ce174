"""The dashboard (GET /) in a real browser: Debian's headless Chromium driven by
Playwright, against template.yaml on the local runtime, over real HTTP and WebSocket
sockets. The page is only a client of the public APIs, so these tests watch the DOM
and the traffic, as a user and the network would see them. The browser signs in with
the session's `api_key` (tests/e2e/conftest.py), made as `order-engine keys create`
makes one."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Request,
    Route,
    WebSocketRoute,
    expect,
    sync_playwright,
)

from local_runtime.runtime import LocalRuntime
from order_engine.orders import HAPPY_PATH
from order_engine_cli.client import OrderClient
from tests.support.stack import SLOW_VENUES, venues_configured

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HAPPY = [status.value for status in HAPPY_PATH]
TERMINAL = {"confirmed", "failed"}
ORDER = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "slippageBps": 500}
# A swap then takes 1.5-2.5 s: every state shows, and a reload lands mid-flight.
LATENCY_SCALE = "0.6"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
DURATION = re.compile(r"^\d+(\.\d+)? (ms|s)$|^\d+:\d\d min$")

# Every change of a row's data-status, in order, as the browser applied them. Several
# changes in one task arrive as one batch: each record's oldValue is the value before
# it, so the value after it is the next record's oldValue (or the current one).
STATUS_LOG = """
window.__statusLog = [];
new MutationObserver((records) => {
  const seen = new Map();
  for (const record of records) {
    if (!record.target.matches || !record.target.matches("li.order")) continue;
    if (!seen.has(record.target)) seen.set(record.target, []);
    seen.get(record.target).push(record.oldValue);
  }
  for (const [row, before] of seen) {
    let previous = before[0];
    for (const value of [...before.slice(1), row.dataset.status]) {
      if (value !== previous) window.__statusLog.push([row.dataset.orderId, value]);
      previous = value;
    }
  }
}).observe(document, {
  subtree: true, attributes: true, attributeFilter: ["data-status"], attributeOldValue: true,
});
"""


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def visible_latency(runtime: LocalRuntime) -> Iterator[None]:
    """The shared runtime runs instant venues; these tests want to see states go by, so
    every function is reconfigured for the module (fresh sandboxes read the new value)."""
    previous = {
        name: environment["DEX_LATENCY_SCALE"]
        for name, environment in runtime.function_environments.items()
        if "DEX_LATENCY_SCALE" in environment
    }
    for name in previous:
        runtime.update_function_environment(name, {"DEX_LATENCY_SCALE": LATENCY_SCALE})
    yield
    for name, value in previous.items():
        runtime.update_function_environment(name, {"DEX_LATENCY_SCALE": value})


@pytest.fixture
def api_key(fresh_api_key: str) -> str:
    """A key of an account of its own: the page lists its account's orders, and these
    tests count the rows."""
    return fresh_api_key


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Traffic:
    """What the page sent, and what went wrong in it."""

    requests: list[Request] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def posts(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]


@dataclass
class Dashboard:
    page: Page
    context: BrowserContext
    traffic: Traffic
    url: str

    def open(self, api_key: str) -> None:
        self.page.goto(self.url)
        self.page.fill("#api-key", api_key)
        self.page.fill("#slippage", "500")  # wide: these tests are not about slippage

    def row(self, order_id: str) -> Any:
        return self.page.locator(f'li.order[data-order-id="{order_id}"]')

    def order_ids(self) -> list[str]:
        ids = self.page.locator("li.order").evaluate_all("rows => rows.map(r => r.dataset.orderId)")
        return [str(i) for i in ids]

    def place_one(self) -> str:
        before = set(self.order_ids())
        self.page.click("#place")
        expect(self.page.locator("li.order")).to_have_count(len(before) + 1)
        (new,) = set(self.order_ids()) - before
        return new

    def steps(self, order_id: str) -> list[str]:
        steps = self.row(order_id).locator(".step.reached")
        return [str(s) for s in steps.evaluate_all("els => els.map(e => e.dataset.step)")]

    def status_log(self, order_id: str) -> list[str]:
        log = self.page.evaluate("() => window.__statusLog")
        return [status for logged_id, status in log if logged_id == order_id]

    def wait_terminal(self, order_id: str, timeout: float = 20_000) -> str:
        row = self.row(order_id)
        finished = re.compile("^(confirmed|failed)$")
        expect(row).to_have_attribute("data-status", finished, timeout=timeout)
        return str(row.get_attribute("data-status"))


@pytest.fixture
def dashboard(browser: Browser, runtime: LocalRuntime) -> Iterator[Dashboard]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.add_init_script(STATUS_LOG)
    traffic = Traffic()
    page.on("request", lambda r: traffic.requests.append(r) if "/api/" in r.url else None)
    page.on("websocket", lambda ws: traffic.sockets.append(ws.url))
    page.on("pageerror", lambda e: traffic.errors.append(f"pageerror: {e}"))
    page.on(
        "console",
        lambda m: traffic.errors.append(f"console: {m.text}") if m.type == "error" else None,
    )
    yield Dashboard(page, context, traffic, runtime.http_url + "/")
    context.close()


# --- the page itself ----------------------------------------------------------------------


def test_the_page_is_served_as_html_by_the_http_api(runtime: LocalRuntime) -> None:
    client = OrderClient(runtime.http_url)
    status, body = client.request("GET", "/", headers={"Accept": "text/html"})
    assert status == 200
    assert isinstance(body, str) and body.startswith("<!doctype html>")
    assert "https://" not in body and "http://" not in body  # nothing fetched from elsewhere


# --- the user's journeys ------------------------------------------------------------------


def test_an_order_placed_through_the_form_shows_every_state_then_its_quotes_and_swap(
    dashboard: Dashboard, api_key: str, runtime: LocalRuntime
) -> None:
    dashboard.open(api_key)
    dashboard.page.fill("#amount", "1.5")
    order_id = dashboard.place_one()

    # The row goes through each state live, once each, in order.
    assert dashboard.wait_terminal(order_id) == "confirmed"
    assert dashboard.status_log(order_id) == HAPPY
    assert dashboard.steps(order_id) == HAPPY
    row = dashboard.row(order_id)
    durations = row.locator(".step.reached .dur").all_inner_texts()
    assert all(DURATION.match(d) for d in durations[:-1]), durations
    assert durations[-1].startswith("total ")

    # What the page shows is what the API has: both quotes, the chosen venue, the swap.
    order = OrderClient(runtime.http_url, api_key=api_key).get(order_id)
    route = order["route"]
    venues = row.locator("tr.quote").evaluate_all("rows => rows.map(r => r.dataset.venue)")
    assert sorted(venues) == sorted(q["venue"] for q in route["quotes"]) and len(venues) == 2
    expect(row.locator("tr.quote.chosen")).to_have_count(1)
    expect(row.locator("tr.quote.chosen")).to_have_attribute("data-venue", route["venue"])
    chosen = next(q["quote"] for q in route["quotes"] if q["venue"] == route["venue"])
    expect(row.locator("tr.quote.chosen td.fee")).to_have_text(f"{chosen['feeBps'] / 100:.2f} %")
    expect(row.locator("tr.quote.chosen td.num").first).to_have_text(re.compile(r"^[\d,.]+$"))
    expect(row.locator(".reason")).to_have_text(route["reason"])
    expect(row.locator(".signature")).to_have_text(order["txSignature"])
    expect(row.locator(".result .executed")).to_contain_text(re.compile(r"\d"))
    expect(row.locator(".result .delta")).to_have_text(re.compile(r"^[+\u2212]\d+\.\d\d %$"))
    expect(row.locator(".badge")).to_have_text("confirmed")

    # The auth contract: a Bearer header on HTTP, ?apiKey= on the WebSocket.
    (post,) = dashboard.traffic.posts()
    assert post.headers.get("authorization") == f"Bearer {api_key}"
    assert UUID.match(post.headers.get("idempotency-key", ""))
    assert json.loads(post.post_data or "{}") == {
        "type": "market",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "1.5",
        "slippageBps": 500,
    }
    assert dashboard.traffic.sockets
    assert all(f"apiKey={api_key}" in url for url in dashboard.traffic.sockets)
    assert dashboard.traffic.errors == []


def test_an_order_the_list_shows_before_its_post_answers_is_still_followed_live(
    dashboard: Dashboard, api_key: str
) -> None:
    """Entering the key asks for the key's orders; a slow list answer can arrive after
    the new order was written and before the POST's answer. The row it makes knows no
    WebSocket URL, but the POST's answer brings one, and the row follows it live."""
    held: dict[str, Route] = {}
    dashboard.page.route("**/api/orders?limit=*", lambda route: held.setdefault("list", route))
    dashboard.page.route("**/api/orders/execute", lambda route: held.setdefault("post", route))
    dashboard.open(api_key)
    dashboard.page.fill("#amount", "1.5")
    dashboard.page.click("#place")
    dashboard.page.wait_for_function("() => document.querySelector('form[aria-busy=true]')")
    while "post" not in held:
        dashboard.page.wait_for_timeout(20)

    placed = held["post"].fetch()  # the order now exists; the page does not know it yet
    held["list"].continue_()
    expect(dashboard.page.locator("li.order")).to_have_count(1)
    held["post"].fulfill(response=placed)

    (order_id,) = dashboard.order_ids()
    assert dashboard.wait_terminal(order_id) == "confirmed"
    assert dashboard.status_log(order_id) == HAPPY
    assert dashboard.traffic.sockets
    assert dashboard.traffic.errors == []


def test_five_at_once_places_five_orders_that_all_finish(
    dashboard: Dashboard, api_key: str
) -> None:
    dashboard.open(api_key)
    dashboard.page.select_option("#token-in", "USDC")
    dashboard.page.select_option("#token-out", "BONK")
    dashboard.page.fill("#amount", "250")
    dashboard.page.click("#place-five")

    expect(dashboard.page.locator("li.order")).to_have_count(5)
    ids = dashboard.order_ids()
    assert len(set(ids)) == 5
    for order_id in ids:
        assert dashboard.wait_terminal(order_id, timeout=30_000) in TERMINAL
        log = dashboard.status_log(order_id)
        assert log == dashboard.steps(order_id), log
        assert log in ([*HAPPY[:n], "failed"] for n in range(1, 5)) or log == HAPPY, log
    keys = {p.headers.get("idempotency-key") for p in dashboard.traffic.posts()}
    assert len(keys) == 5  # a fresh Idempotency-Key for each
    expect(dashboard.page.locator("#order-count")).to_have_text("5 total")

    # A reload shows the same list, in the same order, rebuilt from the API.
    statuses = {order_id: dashboard.status_log(order_id)[-1] for order_id in ids}
    dashboard.page.reload()
    expect(dashboard.page.locator("li.order")).to_have_count(5)
    assert dashboard.order_ids() == ids
    for order_id in ids:
        expect(dashboard.row(order_id)).to_have_attribute("data-status", statuses[order_id])
        assert dashboard.status_log(order_id)[-1] == statuses[order_id]
    expect(dashboard.page.locator("#order-count")).to_have_text("5 total")

    ARTIFACTS.mkdir(exist_ok=True)
    dashboard.page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    dashboard.page.set_viewport_size({"width": 390, "height": 844})
    dashboard.page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    width = dashboard.page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, "the page scrolls sideways at phone width"
    assert dashboard.traffic.errors == []


def test_invalid_input_is_caught_in_the_page_and_the_apis_errors_show_by_their_field(
    dashboard: Dashboard, api_key: str
) -> None:
    page = dashboard.page
    dashboard.open(api_key)
    amount_error = page.locator('.field-error[data-for="amount"]')

    # Caught by the page, as the API would: no request is sent.
    page.select_option("#token-in", "USDC")
    page.fill("#amount", "1.1234567")
    page.click("#place")
    expect(amount_error).to_have_text("amount has more than 6 decimals, the precision of USDC")
    expect(page.locator("#amount")).to_have_attribute("aria-invalid", "true")
    page.fill("#amount", "-1")
    page.click("#place")
    expect(amount_error).to_have_text("amount must be greater than zero")
    page.fill("#amount", "1")
    page.select_option("#token-out", "USDC")
    page.fill("#slippage", "0")
    page.click("#place")
    expect(page.locator('.field-error[data-for="tokenOut"]')).to_have_text(
        "tokenOut must differ from tokenIn"
    )
    expect(page.locator('.field-error[data-for="slippageBps"]')).to_have_text(
        "slippageBps must be between 1 and 1000"
    )
    expect(amount_error).to_be_empty()
    assert dashboard.traffic.posts() == []

    # Caught by the API (the page leaves the largest order size to it): its 422 names
    # the field, and its message shows next to that field.
    page.select_option("#token-in", "SOL")
    page.fill("#slippage", "100")
    page.fill("#amount", "100000.5")
    with page.expect_response(lambda r: r.url.endswith("/api/orders/execute")) as answer:
        page.click("#place")
    assert answer.value.status == 422
    error = answer.value.json()["error"]
    assert error["field"] == "amount"
    expect(amount_error).to_have_text(error["message"])
    assert "largest order" in error["message"]
    expect(page.locator("li.order")).to_have_count(0)


def test_a_rejected_api_key_is_shown_next_to_the_key_field(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.open("not-a-key-anyone-issued")
    with page.expect_response(lambda r: r.url.endswith("/api/orders/execute")) as answer:
        page.click("#place")
    assert answer.value.status == 401
    expect(page.locator('.field-error[data-for="apiKey"]')).to_have_text(
        answer.value.json()["error"]["message"]
    )
    expect(page.locator("#api-key")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("li.order")).to_have_count(0)


def test_a_reload_mid_flight_rebuilds_the_order_and_follows_it_to_the_end(
    dashboard: Dashboard, api_key: str
) -> None:
    page = dashboard.page
    dashboard.open(api_key)
    order_id = dashboard.place_one()
    expect(dashboard.row(order_id)).to_have_attribute("data-status", "submitted")

    page.reload()
    # Rebuilt from the API (the id was remembered), not yet finished, then live again.
    expect(dashboard.row(order_id)).to_have_count(1)
    assert dashboard.wait_terminal(order_id) == "confirmed"
    after_reload = dashboard.status_log(order_id)
    assert after_reload[0] not in TERMINAL, f"the reload did not land mid-flight: {after_reload}"
    assert after_reload == HAPPY[HAPPY.index(after_reload[0]) :]
    assert dashboard.steps(order_id) == HAPPY
    expect(page.locator("#api-key")).to_have_value(api_key)  # remembered too
    assert dashboard.traffic.errors == []


def test_a_dropped_socket_resubscribes_and_duplicate_messages_show_once(
    dashboard: Dashboard, api_key: str
) -> None:
    """Every message from the server reaches the page twice, and the first socket is
    cut once the order is submitted: the page reconnects, gets a snapshot repeating
    what it has, and still shows each status exactly once."""
    page = dashboard.page
    routes: list[WebSocketRoute] = []

    def doubled(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        server.on_message(lambda message: (ws.send(message), ws.send(message)))
        routes.append(ws)

    page.route_web_socket(re.compile(r"^ws://"), doubled)
    dashboard.open(api_key)
    order_id = dashboard.place_one()
    expect(dashboard.row(order_id)).to_have_attribute("data-status", "submitted")
    routes[0].close(code=4001, reason="dropped by the test")

    assert dashboard.wait_terminal(order_id) == "confirmed"
    assert len(routes) >= 2, "the page did not reconnect"
    assert dashboard.status_log(order_id) == HAPPY
    assert dashboard.steps(order_id) == HAPPY


def test_a_limit_order_placed_in_the_form_waits_showing_the_best_price_then_fires(
    dashboard: Dashboard, api_key: str
) -> None:
    dashboard.open(api_key)
    dashboard.page.select_option("#order-type", "limit")
    dashboard.page.fill("#amount", "1.5")
    dashboard.page.fill("#expires-in", "1")

    # SOL trades near 150 USDC: a limit of 400 waits, showing the market against it.
    dashboard.page.fill("#limit-price", "400")
    waiting = dashboard.place_one()
    row = dashboard.row(waiting)
    expect(row).to_have_attribute("data-status", "watching", timeout=10_000)
    watch = row.locator(".watch")
    expect(watch).to_have_text(
        re.compile(r"^best [\d,.]+ USDC \((raydium|meteora)\) vs limit 400$"), timeout=10_000
    )
    expect(watch).to_have_attribute("data-met", "no")
    expect(row.locator(".meta .slip")).to_contain_text("limit ≥ 400")

    # A limit of 100 the market meets at the watch's next tick: it fires and confirms.
    dashboard.page.fill("#limit-price", "100")
    fired = dashboard.place_one()
    fired_row = dashboard.row(fired)
    expect(fired_row).to_have_attribute("data-status", "confirmed", timeout=30_000)
    limit_flow = ["pending", "watching", *HAPPY[1:]]
    assert dashboard.status_log(fired) == limit_flow
    assert dashboard.steps(fired) == limit_flow
    expect(fired_row.locator(".watch")).to_be_hidden()
    expect(row).to_have_attribute("data-status", "watching")  # the other one still waits

    # A waiting order has no transaction yet: its Cancel button ends it cancelled.
    row.locator("button.cancel").click()
    expect(row).to_have_attribute("data-status", "cancelled", timeout=10_000)
    expect(row.locator("button.cancel")).to_be_hidden()
    expect(row.locator(".watch")).to_be_hidden()

    posted = [json.loads(p.post_data or "{}") for p in dashboard.traffic.posts()]
    assert [(p["type"], p["limitPrice"]) for p in posted] == [("limit", "400"), ("limit", "100")]
    assert all(p["expiresAt"].endswith("Z") for p in posted)
    assert dashboard.traffic.errors == []


def test_orders_placed_elsewhere_are_listed_and_open_ones_can_be_cancelled(
    dashboard: Dashboard, api_key: str, runtime: LocalRuntime
) -> None:
    """A new browser shows the key's orders from the API, and the Cancel button of an
    open order (one placed elsewhere, one placed here) ends it cancelled, with no swap."""
    with venues_configured(runtime, SLOW_VENUES):  # pending lasts seconds
        client = OrderClient(runtime.http_url, api_key=api_key)
        elsewhere = client.place({**ORDER, "amount": "0.5"})["orderId"]
        dashboard.open(api_key)

        row = dashboard.row(elsewhere)
        expect(row).to_have_count(1)  # from the list: this browser never placed it
        expect(row.locator(".amount")).to_have_text("0.5")
        row.locator("button.cancel").click()
        expect(row).to_have_attribute("data-status", "cancelled", timeout=10_000)
        expect(row.locator("button.cancel")).to_be_hidden()

        here = dashboard.place_one()
        dashboard.row(here).locator("button.cancel").click()
        expect(dashboard.row(here)).to_have_attribute("data-status", "cancelled", timeout=10_000)

    for order_id in (elsewhere, here):
        order = client.get(order_id)
        assert order["status"] == "cancelled" and order["txSignature"] is None
    deletes = [r for r in dashboard.traffic.requests if r.method == "DELETE"]
    assert [r.headers.get("authorization") for r in deletes] == [f"Bearer {api_key}"] * 2
    assert dashboard.traffic.errors == []


# --- the live metrics panel (the local runtime's /@local/metrics) -------------------------


def step_count(page: Page, step: str) -> int:
    cell = page.locator(f'#step-times tr[data-step="{step}"] td.count')
    return int(cell.text_content() or "0") if cell.count() else 0


def test_the_live_metrics_panel_moves_as_orders_complete(
    dashboard: Dashboard, api_key: str
) -> None:
    page = dashboard.page
    dashboard.open(api_key)
    panel = page.locator("#live-metrics")
    expect(panel).to_be_visible()
    rate = page.locator("#orders-a-minute")
    expect(rate).to_have_text("0")  # the minute starts when the page does
    confirmed_before = step_count(page, "confirm")

    first, second = dashboard.place_one(), dashboard.place_one()
    assert dashboard.wait_terminal(first) == "confirmed"
    assert dashboard.wait_terminal(second) == "confirmed"

    # At least: an order of an earlier test may still finish (or run a step) meanwhile.
    page.wait_for_function(
        """([before]) => Number(document.querySelector("#orders-a-minute").textContent) >= 2
          && Number(document.querySelector('#step-times tr[data-step="confirm"] td.count')
               ?.textContent) >= before + 2""",
        arg=[confirmed_before],
        timeout=10_000,
    )
    for step in ("route", "build", "submit", "confirm"):
        row = page.locator(f'#step-times tr[data-step="{step}"]')
        expect(row.locator("td.p50")).to_have_text(re.compile(r"^\d+(\.\d)? ms$"))
        expect(row.locator("td.p99")).to_have_text(re.compile(r"^\d+(\.\d)? ms$"))
    steps = page.locator("#step-times tr").evaluate_all("rows => rows.map(r => r.dataset.step)")
    assert steps[:4] == ["route", "build", "submit", "confirm"]
    assert dashboard.traffic.errors == []


def test_the_live_metrics_panel_hides_where_the_endpoint_is_not_served(
    dashboard: Dashboard, api_key: str
) -> None:
    """On AWS the path is API Gateway's 403: the panel stays hidden and polling stops."""
    page = dashboard.page
    asked: list[str] = []

    def forbidden(route: Any) -> None:
        asked.append(route.request.url)
        route.fulfill(status=403, body='{"message":"Missing Authentication Token"}')

    page.route("**/@local/metrics", forbidden)
    dashboard.open(api_key)
    expect(page.locator("#orders")).to_have_count(1)
    page.wait_for_timeout(5_000)  # two polling periods and more
    assert len(asked) == 1
    expect(page.locator("#live-metrics")).to_have_count(1)
    expect(page.locator("#live-metrics")).to_be_hidden()
