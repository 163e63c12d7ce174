"""GET /api/orders through the real handler: the caller's orders, newest first, a page at
a time, filtered, with every bad parameter refused naming it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from chalice.test import Client

from order_engine.order_list import MAX_PAGE_SIZE
from tests.support.handler_stack import Stack, bearer


def list_orders(stack: Stack, query: str = "", key: str | None = None) -> tuple[int, Any]:
    with Client(stack.api.app) as client:
        response = client.http.get(f"/api/orders{query}", headers=bearer(key or stack.api_key))
    return response.status_code, json.loads(response.body)


def all_pages(stack: Stack, query: str, key: str) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = ""
    while True:
        status, body = list_orders(stack, f"?{query}{cursor}", key)
        assert status == 200, body
        pages.append([order["id"] for order in body["orders"]])
        if body["nextCursor"] is None:
            return pages
        cursor = f"&cursor={body['nextCursor']}"


def test_pages_hold_the_callers_orders_newest_first_each_once(fresh: Stack) -> None:
    key = fresh.engine.accounts.create_key(f"lister-{uuid.uuid4().hex[:8]}").key
    placed = [fresh.place_as(key) for _ in range(7)]

    pages = all_pages(fresh, "limit=3", key)

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [order_id for page in pages for order_id in page] == placed[::-1]


def test_another_accounts_orders_never_appear(fresh: Stack) -> None:
    mine = fresh.engine.accounts.create_key(f"mine-{uuid.uuid4().hex[:8]}").key
    theirs = fresh.engine.accounts.create_key(f"theirs-{uuid.uuid4().hex[:8]}").key
    my_orders = {fresh.place_as(mine) for _ in range(2)}
    their_orders = {fresh.place_as(theirs) for _ in range(2)}

    assert {i for page in all_pages(fresh, "limit=1", mine) for i in page} == my_orders
    assert {i for page in all_pages(fresh, "", theirs) for i in page} == their_orders


def test_the_status_filter_keeps_only_orders_in_that_status(fresh: Stack) -> None:
    key = fresh.engine.accounts.create_key(f"filter-{uuid.uuid4().hex[:8]}").key
    kept, cancelled = fresh.place_as(key), fresh.place_as(key)
    with Client(fresh.api.app) as client:
        assert (
            client.http.delete(f"/api/orders/{cancelled}", headers=bearer(key)).status_code == 200
        )

    assert all_pages(fresh, "status=cancelled", key) == [[cancelled]]
    assert all_pages(fresh, "status=pending&type=market", key) == [[kept]]


def test_orders_created_in_the_same_instant_are_split_across_pages_by_id(
    fresh: Stack,
) -> None:
    key = fresh.engine.accounts.create_key(f"ties-{uuid.uuid4().hex[:8]}").key
    placed = {fresh.place_as(key) for _ in range(5)}
    with psycopg.connect(fresh.database_url) as conn:
        conn.execute(
            "UPDATE orders SET created_at = '2026-01-01T00:00:00Z' WHERE id = ANY(%s::uuid[])",
            (list(placed),),
        )

    pages = all_pages(fresh, "limit=2", key)

    seen = [order_id for page in pages for order_id in page]
    assert sorted(seen) == sorted(placed) and len(seen) == len(placed)
    assert seen == sorted(placed, reverse=True)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?limit=0", "limit"),
        (f"?limit={MAX_PAGE_SIZE + 1}", "limit"),
        ("?limit=ten", "limit"),
        ("?limit=-1", "limit"),
        ("?status=done", "status"),
        ("?type=stop", "type"),
        ("?cursor=not-a-cursor", "cursor"),
        ("?cursor=WyJ4IiwgInkiXQ", "cursor"),  # base64 of ["x", "y"]
        ("?sort=asc", "sort"),
    ],
)
def test_a_bad_parameter_is_refused_with_422_naming_it(
    fresh: Stack, query: str, field: str
) -> None:
    status, body = list_orders(fresh, query)
    assert (status, body["error"]["field"]) == (422, field), body


def test_the_largest_page_is_accepted(fresh: Stack) -> None:
    status, body = list_orders(fresh, f"?limit={MAX_PAGE_SIZE}")
    assert status == 200 and len(body["orders"]) <= MAX_PAGE_SIZE


def test_listing_needs_a_key(fresh: Stack) -> None:
    with Client(fresh.api.app) as client:
        assert client.http.get("/api/orders").status_code == 401
