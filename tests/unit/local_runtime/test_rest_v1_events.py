"""REST v1 proxy events: the shape API Gateway sends, accepted by a real Chalice app."""

from __future__ import annotations

import base64
import json
from typing import Any

from chalice import Chalice, Response

from local_runtime.lambda_context import LambdaContext
from local_runtime.rest_events import ApiContext, HttpRequest, proxy_response, rest_event
from local_runtime.routes import Route, RouteMatch, RouteTable

API = ApiContext("abcdef1234", "Prod", "123456789012", "127.0.0.1:3000", ("image/png",))

app = Chalice(app_name="shape-test")
app.api.binary_types.append("image/png")


@app.route("/orders/{order_id}", methods=["GET", "POST"])
def order(order_id: str) -> dict[str, Any]:
    request = app.current_request
    return {
        "id": order_id,
        "method": request.method,
        "query": request.query_params,
        "multi": request.query_params.getlist("tag") if request.query_params else None,
        "header": request.headers.get("x-trace"),
        "json": request.json_body if request.method == "POST" else None,
        "resourcePath": request.context["resourcePath"],
        "sourceIp": request.context["identity"]["sourceIp"],
    }


@app.route("/upload", methods=["POST"], content_types=["image/png"])
def upload() -> Response:
    raw = app.current_request.raw_body
    return Response(body=raw[::-1], status_code=200, headers={"Content-Type": "image/png"})


def invoke(
    method: str,
    path: str,
    *,
    headers: list[tuple[str, str]] | None = None,
    query: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> dict[str, Any]:
    table = RouteTable(
        [
            Route("/orders/{order_id}", "GET", "f"),
            Route("/orders/{order_id}", "POST", "f"),
            Route("/upload", "POST", "f"),
        ]
    )
    match = table.match(method, path)
    assert isinstance(match, RouteMatch)
    request = HttpRequest(method, path, headers or [], query or [], body)
    event = rest_event(request, match, API)
    context = LambdaContext("f", "arn:aws:lambda:us-east-1:123456789012:function:f", 128, 3)
    result: dict[str, Any] = app(event, context)
    return result


def test_event_has_every_field_chalice_and_api_gateway_define() -> None:
    match = RouteTable([Route("/orders/{id}", "GET", "f")]).match("GET", "/orders/7")
    assert match is not None
    request = HttpRequest(
        "GET", "/orders/7", [("X-Trace", "1"), ("X-Trace", "2")], [("a", "1"), ("a", "2")], b""
    )
    event = rest_event(request, match, API)
    assert event["resource"] == "/orders/{id}"
    assert event["headers"] == {"x-trace": "2"}
    assert event["multiValueHeaders"] == {"x-trace": ["1", "2"]}
    assert event["queryStringParameters"] == {"a": "2"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert event["pathParameters"] == {"id": "7"}
    assert event["body"] is None and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["resourcePath"] == "/orders/{id}"
    assert context["httpMethod"] == "GET"
    assert context["path"] == "/Prod/orders/7"
    assert context["stage"] == "Prod" and context["apiId"] == "abcdef1234"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["requestId"] and context["requestTimeEpoch"] > 0


def test_no_query_string_gives_none_as_api_gateway_does() -> None:
    match = RouteTable([Route("/x", "GET", "f")]).match("GET", "/x")
    assert match is not None
    event = rest_event(HttpRequest("GET", "/x", [], [], b""), match, API)
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None


def test_a_real_chalice_app_routes_and_reads_the_event() -> None:
    result = invoke(
        "GET", "/orders/o-1", headers=[("X-Trace", "t-9")], query=[("tag", "a"), ("tag", "b")]
    )
    assert result["statusCode"] == 200
    body = json.loads(result["body"])
    assert body == {
        "id": "o-1",
        "method": "GET",
        "query": {"tag": "b"},
        "multi": ["a", "b"],
        "header": "t-9",
        "json": None,
        "resourcePath": "/orders/{order_id}",
        "sourceIp": "127.0.0.1",
    }


def test_a_json_body_reaches_chalice() -> None:
    result = invoke(
        "POST", "/orders/o-2", headers=[("Content-Type", "application/json")], body=b'{"amount": 3}'
    )
    assert json.loads(result["body"])["json"] == {"amount": 3}


def test_binary_bodies_travel_base64_both_ways() -> None:
    result = invoke(
        "POST",
        "/upload",
        headers=[("Content-Type", "image/png"), ("Accept", "image/png")],
        body=b"\x00\x01\xff",
    )
    assert result["isBase64Encoded"] is True
    response = proxy_response(result)
    assert response.status == 200 and response.body == b"\xff\x01\x00"


def test_proxy_response_merges_headers_and_rejects_malformed_results() -> None:
    response = proxy_response(
        {
            "statusCode": 201,
            "headers": {"A": "1"},
            "multiValueHeaders": {"Set-Cookie": ["x=1", "y=2"]},
            "body": "hi",
        }
    )
    assert response.status == 201 and response.body == b"hi"
    assert ("a", "1") in response.headers
    assert [v for k, v in response.headers if k == "set-cookie"] == ["x=1", "y=2"]
    assert proxy_response("nope").status == 502
    assert proxy_response({"body": "no status"}).status == 502
    encoded = proxy_response(
        {"statusCode": 200, "isBase64Encoded": True, "body": base64.b64encode(b"\x00").decode()}
    )
    assert encoded.body == b"\x00"
