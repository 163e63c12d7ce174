"""REST route matching: literals beat {param} beat {proxy+}; exact methods beat ANY."""

from __future__ import annotations

from local_runtime.routes import Route, RouteTable

TABLE = RouteTable(
    [
        Route("/orders", "POST", "create"),
        Route("/orders/{id}", "GET", "get"),
        Route("/orders/latest", "GET", "latest"),
        Route("/orders/{id}", "ANY", "any_order"),
        Route("/files/{proxy+}", "ANY", "files"),
        Route("/{proxy+}", "ANY", "catch_all"),
        Route("/", "GET", "root"),
    ]
)


def test_literal_segments_win_over_parameters() -> None:
    match = TABLE.match("GET", "/orders/latest")
    assert match is not None and match.route.function == "latest"


def test_parameters_are_captured() -> None:
    match = TABLE.match("GET", "/orders/abc-1")
    assert match is not None
    assert (match.route.function, match.path_parameters) == ("get", {"id": "abc-1"})


def test_exact_method_wins_over_any_and_any_takes_the_rest() -> None:
    match = TABLE.match("DELETE", "/orders/abc")
    assert match is not None and match.route.function == "any_order"


def test_greedy_proxy_captures_the_remaining_path() -> None:
    match = TABLE.match("PUT", "/files/a/b/c.txt")
    assert match is not None
    assert (match.route.function, match.path_parameters) == ("files", {"proxy": "a/b/c.txt"})
    other = TABLE.match("GET", "/anything/else")
    assert other is not None and other.route.function == "catch_all"


def test_root_and_trailing_slashes() -> None:
    root = TABLE.match("GET", "/")
    assert root is not None and root.route.function == "root"
    trailing = TABLE.match("GET", "/orders/x/")
    assert trailing is not None and trailing.route.function == "get"


def test_no_route_for_the_method_is_no_match() -> None:
    table = RouteTable([Route("/orders", "POST", "create")])
    assert table.match("GET", "/orders") is None
    assert table.match("POST", "/nope") is None
