"""After every bad request of this package: the stack is healthy, confirms a good order
over HTTP and over a socket, and mallory, who sent them all, has no rows."""

from __future__ import annotations

from local_runtime.runtime import LocalRuntime
from order_engine_cli.client import OrderClient
from tests.support.bad_input import Mallory, row_counts, send_http
from tests.support.stack import HAPPY, execute_on_socket, follow_posted_order


def test_after_the_barrage_the_stack_is_healthy_and_a_good_order_confirms(
    runtime: LocalRuntime, migrated_url: str, mallory: Mallory, fresh_api_key: str
) -> None:
    health = send_http(runtime, "GET", "/health")
    assert (health.status, health.json()["status"]) == (200, "ok")

    client = OrderClient(runtime.http_url, api_key=fresh_api_key)
    order_id, events = follow_posted_order(client)
    assert [e["status"] for e in events] == HAPPY
    assert client.get(order_id)["status"] == "confirmed"
    _, events = execute_on_socket(runtime.ws_url(), fresh_api_key)
    assert [e["status"] for e in events] == HAPPY

    counts = row_counts(migrated_url, mallory.account_id)
    assert (counts["orders"], counts["order_events"], counts["outbox"]) == (0, 0, 0)
