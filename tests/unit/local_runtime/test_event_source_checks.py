"""The start-time check Lambda makes of an SQS event source: Timeout against visibility."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_runtime.event_source_mapping import check_visibility_timeouts
from local_runtime.specs import FunctionSpec, QueueSpec, SqsEventSpec
from local_runtime.template import TemplateError

ARN = "arn:aws:sqs:us-east-1:123456789012:jobs"


def function(timeout: float) -> FunctionSpec:
    return FunctionSpec(
        logical_id="JobFunction",
        function_name="local-JobFunction",
        arn="arn:aws:lambda:us-east-1:123456789012:function:local-JobFunction",
        code_dir=Path("."),
        handler="jobs.handle",
        timeout=timeout,
        sqs_events=(SqsEventSpec("Jobs", ARN),),
    )


def queue(**attributes: str) -> QueueSpec:
    return QueueSpec("JobQueue", "jobs", "http://sqs/jobs", ARN, dict(attributes))


def test_a_timeout_within_the_visibility_timeout_is_accepted() -> None:
    check_visibility_timeouts({"JobFunction": function(30)}, [queue(VisibilityTimeout="30")])


def test_a_queue_without_its_own_visibility_timeout_has_sqss_30_seconds() -> None:
    with pytest.raises(TemplateError) as refused:
        check_visibility_timeouts({"JobFunction": function(31)}, [queue()])
    assert "Timeout (31 s)" in str(refused.value)
    assert "VisibilityTimeout (30 s)" in str(refused.value)
    assert "JobFunction/Jobs" in str(refused.value) and "jobs" in str(refused.value)
