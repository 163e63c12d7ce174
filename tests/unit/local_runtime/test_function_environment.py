"""A function's environment: its own variables, the caller's, Lambda's, local endpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from local_runtime.environment import (
    AppliedEnvironment,
    LocalEndpoint,
    function_environment,
    rewrite_endpoints,
)
from local_runtime.specs import FunctionSpec


def spec(environment: dict[str, str]) -> FunctionSpec:
    return FunctionSpec(
        logical_id="Worker",
        function_name="local-Worker-ABC",
        arn="arn:aws:lambda:eu-west-1:000000000000:function:local-Worker-ABC",
        code_dir=Path("/code/worker"),
        handler="app.handler",
        runtime="python3.12",
        memory_mb=256,
        environment=environment,
    )


def test_a_function_sees_its_variables_over_the_hosts_and_the_callers_over_both() -> None:
    env = function_environment(
        spec({"LOG_LEVEL": "DEBUG", "DATABASE_URL": "from-template"}),
        host={"PATH": "/bin", "LOG_LEVEL": "host"},
        overrides={"DATABASE_URL": "postgresql://local"},
        region="eu-west-1",
    )
    assert env["PATH"] == "/bin" and env["LOG_LEVEL"] == "DEBUG"
    assert env["DATABASE_URL"] == "postgresql://local"


def test_lambda_sets_its_own_variables_in_every_sandbox() -> None:
    env = function_environment(spec({}), host={}, overrides={}, region="eu-west-1")
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "local-Worker-ABC"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["LAMBDA_TASK_ROOT"] == "/code/worker" and env["_HANDLER"] == "app.handler"


def test_aws_endpoints_of_local_apis_become_local_urls() -> None:
    endpoints = [
        LocalEndpoint("wsapi12345", "http://127.0.0.1:3001", "ws://127.0.0.1:3001"),
        LocalEndpoint("restapi123", "http://127.0.0.1:3000", None, keeps_stage=False),
    ]
    host = "execute-api.eu-west-1.amazonaws.com"
    assert rewrite_endpoints(f"https://wsapi12345.{host}/prod", endpoints, "eu-west-1") == (
        "http://127.0.0.1:3001/prod"
    )
    assert rewrite_endpoints(f"wss://wsapi12345.{host}/prod", endpoints, "eu-west-1") == (
        "ws://127.0.0.1:3001/prod"
    )
    assert rewrite_endpoints(f"https://restapi123.{host}/Prod", endpoints, "eu-west-1") == (
        "http://127.0.0.1:3000"
    )
    assert (
        rewrite_endpoints(f"https://restapi123.{host}/Prod/orders", endpoints, "eu-west-1")
        == "http://127.0.0.1:3000/orders"
    )
    assert rewrite_endpoints("https://other.example.com/x", endpoints, "eu-west-1") == (
        "https://other.example.com/x"
    )


def test_applied_variables_are_restored_on_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LR_TEST_EXISTING", "before")
    monkeypatch.delenv("LR_TEST_NEW", raising=False)
    applied = AppliedEnvironment({"LR_TEST_EXISTING": "during", "LR_TEST_NEW": "x"})
    applied.apply()
    assert os.environ["LR_TEST_EXISTING"] == "during" and os.environ["LR_TEST_NEW"] == "x"
    applied.restore()
    assert os.environ["LR_TEST_EXISTING"] == "before" and "LR_TEST_NEW" not in os.environ
