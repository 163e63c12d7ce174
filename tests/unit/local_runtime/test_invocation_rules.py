"""Pure rules of invocations: handler names, correlation ids, how many sandboxes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from local_runtime.function_code import HandlerImportError, split_handler
from local_runtime.function_sandboxes import sandbox_limit
from local_runtime.functions import correlation_ids
from local_runtime.specs import ApiEventSpec, FunctionSpec, SqsEventSpec

FUNCTION = FunctionSpec("F", "f", "arn:aws:lambda:us-east-1:1:function:f", Path("/f"), "h.h")


def test_handlers_name_a_module_and_an_attribute() -> None:
    assert split_handler("pkg/module.attr") == ("pkg.module", "attr")
    assert split_handler("app.app") == ("app", "app")
    with pytest.raises(HandlerImportError, match="not of the form"):
        split_handler("nodot")


def test_correlation_ids_come_from_configured_keys_in_bodies() -> None:
    event = {
        "Records": [
            {"body": '{"orderId": "o-1"}'},
            {"body": '{"data": {"orderId": "o-2"}}'},
            {"body": "not json"},
        ]
    }
    assert correlation_ids(event, ["orderId"]) == ["o-1", "o-2"]
    assert correlation_ids({"body": '{"orderId": "o-3"}'}, ["orderId"]) == ["o-3"]
    assert correlation_ids({"pathParameters": {"orderId": "o-4"}}, ["orderId"]) == ["o-4"]
    assert correlation_ids({"body": '{"orderId": "o-3"}'}, []) == []
    deep = "[" * 5000 + "]" * 5000  # too deep for json.loads: no id, and no RecursionError
    assert correlation_ids({"body": deep, "pathParameters": {"orderId": "o-5"}}, ["orderId"]) == [
        "o-5"
    ]


def test_a_function_has_no_more_sandboxes_than_it_may_run_at_once() -> None:
    queues = (
        SqsEventSpec("A", "arn:a", maximum_concurrency=2),
        SqsEventSpec("B", "arn:b", maximum_concurrency=3),
        SqsEventSpec("Off", "arn:c", maximum_concurrency=50, enabled=False),
    )
    only_sqs = replace(FUNCTION, sqs_events=queues)
    assert sandbox_limit(only_sqs, runtime_cap=10) == 5  # the mappings' sum
    assert sandbox_limit(only_sqs, runtime_cap=4) == 4  # the runtime's cap
    assert sandbox_limit(replace(only_sqs, reserved_concurrency=1), runtime_cap=10) == 1
    api = ApiEventSpec("Get", "/x", "GET", "ServerlessRestApi")
    with_api = replace(only_sqs, api_events=(api,))
    assert sandbox_limit(with_api, runtime_cap=10) == 10  # the API is bounded by nothing else
    assert sandbox_limit(replace(with_api, reserved_concurrency=3), runtime_cap=10) == 3
