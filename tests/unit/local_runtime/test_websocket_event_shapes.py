"""WebSocket events shaped like API Gateway's, and route selection."""

from __future__ import annotations

from local_runtime.websocket_events import (
    WsApiContext,
    WsClient,
    connect_event,
    disconnect_event,
    message_event,
    new_connection_id,
    select_route,
)

API = WsApiContext("abcdef1234", "local", "127.0.0.1:3001")
CLIENT = WsClient("BFHPhfCWIAMCKlQ=", 1_700_000_000_000, "127.0.0.1", "pytest")


def test_connect_has_headers_and_context_but_no_message_id_or_body() -> None:
    event = connect_event(API, CLIENT, [("host", "127.0.0.1:3001"), ("sec-websocket-key", "k")], [])
    context = event["requestContext"]
    assert context["eventType"] == "CONNECT" and context["routeKey"] == "$connect"
    assert context["connectionId"] == "BFHPhfCWIAMCKlQ="
    assert context["connectedAt"] == 1_700_000_000_000
    assert context["requestTimeEpoch"] >= context["connectedAt"]
    assert context["domainName"] == "127.0.0.1:3001"
    assert (context["stage"], context["apiId"]) == ("local", "abcdef1234")
    assert context["messageDirection"] == "IN"
    assert "messageId" not in context and "body" not in event
    assert event["headers"]["Host"] == "127.0.0.1:3001"
    assert event["headers"]["Sec-WebSocket-Key"] == "k"
    assert event["multiValueHeaders"]["Host"] == ["127.0.0.1:3001"]
    assert "queryStringParameters" not in event  # only when the URL had a query
    assert event["isBase64Encoded"] is False


def test_connect_query_string_gives_single_and_multi_value_maps() -> None:
    event = connect_event(API, CLIENT, [], [("orderId", "1"), ("orderId", "2")])
    assert event["queryStringParameters"] == {"orderId": "2"}
    assert event["multiValueQueryStringParameters"] == {"orderId": ["1", "2"]}


def test_message_has_message_id_and_body_and_no_headers() -> None:
    event = message_event(API, CLIENT, "$default", '{"action": "x"}')
    assert event["requestContext"]["eventType"] == "MESSAGE"
    assert event["requestContext"]["messageId"]
    assert event["body"] == '{"action": "x"}' and event["isBase64Encoded"] is False
    assert "headers" not in event


def test_binary_frames_arrive_base64_encoded() -> None:
    event = message_event(API, CLIENT, "$default", b"\x00\xff")
    assert event["isBase64Encoded"] is True and event["body"] == "AP8="


def test_disconnect_carries_status_code_and_reason() -> None:
    event = disconnect_event(API, CLIENT, 1001, "Going away")
    context = event["requestContext"]
    assert context["eventType"] == "DISCONNECT" and context["routeKey"] == "$disconnect"
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (1001, "Going away")
    assert set(event["headers"]) == {"Host", "x-api-key", "X-Forwarded-For", "x-restapi"}


def test_route_selection_uses_the_expression_and_falls_back_to_default() -> None:
    routes = ["$connect", "$default", "subscribe"]
    expression = "$request.body.action"
    assert select_route(expression, '{"action": "subscribe"}', routes) == "subscribe"
    assert select_route(expression, '{"action": "unknown"}', routes) == "$default"
    assert select_route(expression, "not json", routes) == "$default"
    assert select_route(expression, b"\x00", routes) == "$default"
    deep = '{"action": "subscribe", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    assert select_route(expression, deep, routes) == "$default"  # no RecursionError
    assert (
        select_route("${request.body.meta.kind}", '{"meta": {"kind": "subscribe"}}', routes)
        == "subscribe"
    )
    assert select_route(expression, '{"action": "x"}', ["$connect"]) is None


def test_connection_ids_look_like_api_gateways_and_are_url_safe() -> None:
    ids = {new_connection_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 16 and i.endswith("=") and "/" not in i and "+" not in i for i in ids)
