"""HTTP requests through the local REST API to Chalice and plain handlers, and back."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

import pytest

from local_runtime import LocalRuntime


def call(
    runtime: LocalRuntime,
    path: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    # Only http:// URLs of the runtime are opened here.
    request = urllib.request.Request(  # noqa: S310
        runtime.http_url + path, data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def json_of(raw: bytes) -> Any:
    return json.loads(raw)


def test_a_request_reaches_the_chalice_app_and_its_answer_comes_back(
    runtime: LocalRuntime,
) -> None:
    status, _, body = call(runtime, "/hello")
    assert status == 200
    assert json_of(body) == {"hello": "world", "module": "rest", "stage": "local"}


def test_path_parameters_query_strings_and_methods_reach_chalice(runtime: LocalRuntime) -> None:
    status, _, body = call(runtime, "/items/i-7?tag=a&tag=b", method="PUT")
    assert status == 200
    assert json_of(body) == {
        "id": "i-7",
        "method": "PUT",
        "query": {"tag": "b"},
        "resourcePath": "/items/{item_id}",
    }


def test_a_json_body_and_response_headers_and_status_travel_both_ways(
    runtime: LocalRuntime,
) -> None:
    status, headers, body = call(
        runtime,
        "/echo",
        method="POST",
        body=b'{"orderId": "o-1"}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 201
    assert headers["x-toy"] == "yes"
    assert json_of(body) == {"got": {"orderId": "o-1"}, "contentType": "application/json"}


def test_an_unknown_route_or_method_is_api_gateways_403(runtime: LocalRuntime) -> None:
    for method, path in (("GET", "/nope"), ("DELETE", "/hello")):
        status, headers, body = call(runtime, path, method=method)
        assert status == 403
        assert json_of(body) == {"message": "Missing Authentication Token"}
        assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_a_plain_handler_gets_a_v1_proxy_event_and_sets_multi_value_headers(
    runtime: LocalRuntime,
) -> None:
    status, headers, body = call(runtime, "/files/a/b.txt?x=1")
    assert status == 200
    answer = json_of(body)
    event = answer["event"]
    assert answer["proxy"] == "a/b.txt"
    assert event["resource"] == "/files/{proxy+}"
    assert event["requestContext"]["resourcePath"] == "/files/{proxy+}"
    assert event["multiValueQueryStringParameters"] == {"x": ["1"]}
    assert 0 < answer["remaining"] <= 1000
    assert headers["set-cookie"] in ("a=1, b=2", "a=1,b=2") or "a=1" in headers["set-cookie"]


def test_the_source_ip_is_the_callers_address_whatever_x_forwarded_for_says(
    runtime: LocalRuntime,
) -> None:
    """API Gateway takes requestContext.identity.sourceIp from the connection, not from a
    header the client may write itself."""
    status, _, body = call(runtime, "/files/a", headers={"X-Forwarded-For": "203.0.113.9"})
    assert status == 200
    assert json_of(body)["event"]["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"


def test_a_base64_response_is_decoded_for_the_client(runtime: LocalRuntime) -> None:
    status, _, body = call(runtime, "/files/binary")
    assert (status, body) == (200, b"\x00\x01\xff")


def test_a_handler_that_raises_is_502_with_its_traceback_in_the_log(
    runtime: LocalRuntime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    status, _, body = call(runtime, "/files/boom")
    assert status == 502
    assert json_of(body) == {"message": "Internal server error"}
    assert any(
        "the plain handler failed" in r.getMessage() and "Traceback" in r.getMessage()
        for r in caplog.records
    )


def test_a_handler_past_its_timeout_is_502_and_logged_as_timed_out(
    runtime: LocalRuntime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    status, _, _ = call(runtime, "/files/slow")
    assert status == 502
    assert any(
        "outcome=timeout" in r.getMessage()
        and "Task timed out after 1.00 seconds" in r.getMessage()
        for r in caplog.records
    )


def test_a_malformed_proxy_result_is_502(runtime: LocalRuntime) -> None:
    status, _, _ = call(runtime, "/files/malformed")
    assert status == 502


def test_the_environment_names_local_endpoints_instead_of_aws_ones(
    runtime: LocalRuntime,
) -> None:
    _, _, body = call(runtime, "/env")
    assert json_of(body) == {
        "WS_ENDPOINT": runtime.management_url(),
        "REST_ENDPOINT": runtime.http_url,
        "WORK_QUEUE": runtime.queue_url("WorkQueue"),
    }


def test_invocations_are_logged_with_their_correlation_id(
    runtime: LocalRuntime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="local_runtime.invocations")
    call(
        runtime,
        "/echo",
        method="POST",
        body=b'{"orderId": "o-42"}',
        headers={"Content-Type": "application/json"},
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "local_runtime.invocations"]
    assert any(
        line.startswith("RestFunction request=")
        and "outcome=ok" in line
        and "correlation=o-42" in line
        for line in lines
    )


def test_the_aws_url_shape_with_the_stage_prefix_works_too(runtime: LocalRuntime) -> None:
    status, _, body = call(runtime, "/Prod/hello")  # the implicit API's stage is Prod
    assert status == 200 and json_of(body)["hello"] == "world"
    status, _, _ = call(runtime, "/Prod/nope")
    assert status == 403
