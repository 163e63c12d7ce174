"""ReportBatchItemFailures read exactly as Lambda reads it (AWS "Success and failure
conditions")."""

from __future__ import annotations

from typing import Any

import pytest

from local_runtime.batch_results import judge_batch

IDS = ["m1", "m2", "m3"]


def judge(value: Any, *, ok: bool = True, flag: bool = True) -> tuple[tuple[str, ...], ...]:
    verdict = judge_batch(IDS, invocation_ok=ok, value=value, report_batch_item_failures=flag)
    return verdict.succeeded, verdict.failed


ALL_OK = (("m1", "m2", "m3"), ())
ALL_FAILED = ((), ("m1", "m2", "m3"))


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param(None, ALL_OK, id="null response is success"),
        pytest.param({}, ALL_OK, id="empty response is success"),
        pytest.param({"batchItemFailures": []}, ALL_OK, id="empty list is success"),
        pytest.param({"batchItemFailures": None}, ALL_OK, id="null list is success"),
        pytest.param({"statusCode": 200}, ALL_OK, id="no batchItemFailures key is success"),
        pytest.param(
            {"batchItemFailures": [{"itemIdentifier": "m2"}]},
            (("m1", "m3"), ("m2",)),
            id="listed ids fail, the rest succeed",
        ),
        pytest.param(
            {"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m2"}]},
            (("m1", "m3"), ("m2",)),
            id="a repeated id counts once",
        ),
        pytest.param(
            {"batchItemFailures": [{"itemIdentifier": "zz"}]},
            ALL_FAILED,
            id="unknown id fails the whole batch",
        ),
        pytest.param(
            {"batchItemFailures": [{"itemIdentifier": ""}]},
            ALL_FAILED,
            id="empty id fails the whole batch",
        ),
        pytest.param(
            {"batchItemFailures": [{"itemIdentifier": None}]},
            ALL_FAILED,
            id="null id fails the whole batch",
        ),
        pytest.param(
            {"batchItemFailures": [{"id": "m1"}]},
            ALL_FAILED,
            id="bad key name fails the whole batch",
        ),
        pytest.param({"batchItemFailures": ["m1"]}, ALL_FAILED, id="bare ids fail the whole batch"),
        pytest.param(
            {"batchItemFailures": "m1"}, ALL_FAILED, id="a non-list fails the whole batch"
        ),
        pytest.param("ok", ALL_FAILED, id="a non-object response fails the whole batch"),
    ],
)
def test_with_report_batch_item_failures(response: Any, expected: Any) -> None:
    assert judge(response) == expected


def test_an_exception_or_timeout_fails_the_whole_batch() -> None:
    assert judge({"batchItemFailures": []}, ok=False) == ALL_FAILED
    assert judge(None, ok=False, flag=False) == ALL_FAILED


def test_without_the_flag_any_return_value_is_success() -> None:
    assert judge({"batchItemFailures": [{"itemIdentifier": "m1"}]}, flag=False) == ALL_OK
    assert judge("garbage", flag=False) == ALL_OK


def test_the_log_outcome_names_partial_batches() -> None:
    verdict = judge_batch(
        IDS,
        invocation_ok=True,
        report_batch_item_failures=True,
        value={"batchItemFailures": [{"itemIdentifier": "m1"}]},
    )
    assert verdict.describe() == "batch partial 1 of 3 failed"
