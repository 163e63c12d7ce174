"""Environment variables in a shared process: union, conflicts, local endpoints."""

from __future__ import annotations

import os

import pytest

from local_runtime.environment import (
    AppliedEnvironment,
    EnvironmentConflict,
    LocalEndpoint,
    merge_environments,
    rewrite_endpoints,
)


def test_the_union_of_all_functions_variables_is_applied() -> None:
    merged = merge_environments({"A": {"X": "1", "SHARED": "s"}, "B": {"Y": "2", "SHARED": "s"}})
    assert merged == {"X": "1", "Y": "2", "SHARED": "s"}


def test_two_functions_disagreeing_on_a_variable_refuse_to_start() -> None:
    with pytest.raises(EnvironmentConflict) as error:
        merge_environments({"Api": {"LOG_LEVEL": "DEBUG"}, "Worker": {"LOG_LEVEL": "INFO"}})
    message = str(error.value)
    assert "LOG_LEVEL" in message and "Api" in message and "Worker" in message


def test_caller_overrides_win_and_are_never_a_conflict() -> None:
    merged = merge_environments(
        {"Api": {"DATABASE_URL": "a"}, "Worker": {"DATABASE_URL": "b"}},
        overrides={"DATABASE_URL": "postgresql://local"},
    )
    assert merged == {"DATABASE_URL": "postgresql://local"}


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
