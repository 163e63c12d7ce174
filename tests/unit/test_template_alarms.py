"""template.yaml watches itself: after the SAM transform there is an alarm for every
dead-letter queue, every work queue's backlog and every function's errors and
throttles, all sent to the optional SNS topic, and one dashboard."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from order_engine.telemetry import NAMESPACE
from tests.support.cfn import ref_target
from tests.support.cfn_conditions import choose, condition_values, parameter_values
from tests.support.sam import of_type, template, transform

TOPIC = "arn:aws:sns:us-east-1:123456789012:order-engine-alarms"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:orders-db-AbCdEf"


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return template()


def deployed(sam: dict[str, Any], **given: str) -> dict[str, Any]:
    """The transformed template with its conditions decided for `given` parameters."""
    parameters = parameter_values(sam, {"DatabaseSecretArn": SECRET, **given})
    transformed = transform(sam, {"DatabaseSecretArn": SECRET, **given})
    return choose(transformed, condition_values(sam, parameters))


@pytest.fixture(scope="module")
def with_topic(sam: dict[str, Any]) -> dict[str, Any]:
    return deployed(sam, AlarmTopicArn=TOPIC)


def alarms_on(resources: dict[str, Any], namespace: str, metric: str) -> dict[str, dict[str, Any]]:
    """{dimension value's logical id: alarm} for alarms on one metric."""
    found: dict[str, dict[str, Any]] = {}
    for alarm in of_type(resources, "AWS::CloudWatch::Alarm").values():
        if (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric):
            (dimension,) = alarm["Dimensions"]
            target = ref_target(dimension["Value"])
            assert target is not None, alarm
            assert target not in found, f"two {metric} alarms on {target}"
            found[target] = alarm
    return found


def queues(resources: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(work queues, dead-letter queues) by logical id."""
    all_queues = of_type(resources, "AWS::SQS::Queue")
    dlqs = {
        str(ref_target(props["RedrivePolicy"]["deadLetterTargetArn"]))
        for props in all_queues.values()
        if "RedrivePolicy" in props
    }
    return set(all_queues) - dlqs, dlqs


def test_every_dead_letter_queue_alarms_on_its_first_message(with_topic: dict[str, Any]) -> None:
    _, dlqs = queues(with_topic)
    alarms = alarms_on(with_topic, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert set(alarms) == dlqs and len(dlqs) == 6  # one per step, the notifier's, the watch's
    for alarm in alarms.values():
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
        assert alarm["Dimensions"][0]["Name"] == "QueueName"


def test_every_work_queue_alarms_when_its_oldest_message_is_older_than_the_parameter(
    with_topic: dict[str, Any],
) -> None:
    work, _ = queues(with_topic)
    alarms = alarms_on(with_topic, "AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert set(alarms) == work and len(work) == 6
    for alarm in alarms.values():
        assert alarm["Threshold"] == {"Ref": "QueueAgeAlarmSeconds"}
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_alarms_on_errors_and_throttles(
    with_topic: dict[str, Any], metric: str
) -> None:
    functions = set(of_type(with_topic, "AWS::Lambda::Function"))
    alarms = alarms_on(with_topic, "AWS/Lambda", metric)
    assert set(alarms) == functions and len(functions) >= 11
    for alarm in alarms.values():
        assert (alarm["Statistic"], alarm["Threshold"]) == ("Sum", 0)


def test_every_alarm_notifies_the_topic_when_one_is_given(
    sam: dict[str, Any], with_topic: dict[str, Any]
) -> None:
    with_alarms = of_type(with_topic, "AWS::CloudWatch::Alarm")
    assert len(with_alarms) == 6 + 6 + 2 * len(of_type(with_topic, "AWS::Lambda::Function"))
    for name, alarm in with_alarms.items():
        topic = [{"Ref": "AlarmTopicArn"}]
        assert alarm["AlarmActions"] == topic == alarm["OKActions"], name

    without = of_type(deployed(sam), "AWS::CloudWatch::Alarm")
    assert set(without) == set(with_alarms)
    for name, alarm in without.items():
        assert "AlarmActions" not in alarm and "OKActions" not in alarm, name


def test_the_dashboard_shows_every_queue_and_function_and_the_engines_metrics(
    with_topic: dict[str, Any],
) -> None:
    (dashboard,) = of_type(with_topic, "AWS::CloudWatch::Dashboard").values()
    body_template = dashboard["DashboardBody"]["Fn::Sub"]
    named = set(re.findall(r"\$\{([A-Za-z]+)(?:\.QueueName)?\}", body_template))
    body = json.loads(re.sub(r"\$\{[^}]+\}", "x", body_template))
    assert body["widgets"]
    work, dlqs = queues(with_topic)
    functions = set(of_type(with_topic, "AWS::Lambda::Function")) - {"DashboardFunction"}
    assert work | dlqs | functions <= named
    assert f"{{{NAMESPACE}," in body_template  # the namespace order_engine.telemetry writes
    for metric in (
        "OrdersPlaced",
        "OrdersConfirmed",
        "OrdersFailed",
        "StepDuration",
        "VenueChosen",
        "SlippageBps",
        "OutboxRowsRelayed",
        "NotificationsDelivered",
        "ConnectionsGone",
    ):
        assert metric in body_template, metric
