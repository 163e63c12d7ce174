"""SQS event source mappings against real SQS servers: records, partial batches, DLQs.

On every backend `up` starts by itself, so that each of them is known to behave as
Lambda's pollers need: MiniStack (the default) and moto.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from toy_runtime import Records, batches_with, running_toy_app

from local_runtime import LocalRuntime, RuntimeOptions
from local_runtime.queue_restore import is_missing_queue


@pytest.fixture(scope="module", params=["ministack", "moto"])
def runtime(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, records_file: Path
) -> Iterator[LocalRuntime]:
    folder = tmp_path_factory.mktemp(f"toy-{request.param}")
    with running_toy_app(folder, records_file, sqs=request.param) as running:
        yield running


def test_a_message_reaches_the_function_as_a_lambda_sqs_record_and_is_deleted(
    runtime: LocalRuntime,
    records: Records,
    marker: str,
) -> None:
    sqs = runtime.sqs_client()
    queue_url = runtime.queue_url("WorkQueue")
    sent = sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps({"marker": marker}),
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
    )
    (batch,) = records.wait_for("batch", lambda r: any(marker in b for b in r["bodies"]))
    record = batch["first"]
    assert record["messageId"] == sent["MessageId"]
    assert record["receiptHandle"] and record["md5OfBody"] == sent["MD5OfMessageBody"]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == runtime.queue_arn("WorkQueue")
    assert record["awsRegion"] == "us-east-1"
    attributes = record["attributes"]
    assert attributes["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(attributes)
    assert all(isinstance(v, str) for v in attributes.values())
    assert record["messageAttributes"]["kind"]["stringValue"] == "test"
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    # The delete follows the invocation; on a busy machine it may take a moment, but
    # well within the visibility timeout, after which the message would be back.
    deadline = time.monotonic() + 5
    while True:
        counts = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        left = (
            counts["ApproximateNumberOfMessages"],
            counts["ApproximateNumberOfMessagesNotVisible"],
        )
        if left == ("0", "0") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert left == ("0", "0")


def test_a_partial_batch_response_returns_only_the_failed_messages_to_the_queue(
    runtime: LocalRuntime,
    records: Records,
    marker: str,
) -> None:
    sqs = runtime.sqs_client()
    entries = [
        {"Id": str(i), "MessageBody": json.dumps({"marker": marker, "n": i, "fail": i in (1, 3)})}
        for i in range(4)
    ]
    sent = sqs.send_message_batch(QueueUrl=runtime.queue_url("WorkQueue"), Entries=entries)
    ids = {entry["Id"]: entry["MessageId"] for entry in sent["Successful"]}
    failing = {ids["1"], ids["3"]}
    # Failed messages come back after the queue's 2 s visibility timeout, with count 2.
    deadline = time.monotonic() + 12
    retried: set[str] = set()
    while time.monotonic() < deadline and retried != failing:
        retried = {
            message_id
            for batch in batches_with(records, marker)
            for message_id, count in zip(batch["ids"], batch["counts"], strict=True)
            if count == "2"
        }
        time.sleep(0.1)
    assert retried == failing
    first_round = {
        message_id
        for batch in batches_with(records, marker)
        for message_id, count in zip(batch["ids"], batch["counts"], strict=True)
        if count == "1"
    }
    assert first_round == set(ids.values())


def test_a_message_that_always_fails_lands_in_its_dead_letter_queue(
    runtime: LocalRuntime,
    records: Records,
    marker: str,
) -> None:
    sqs = runtime.sqs_client()
    sent = sqs.send_message(QueueUrl=runtime.queue_url("PoisonQueue"), MessageBody=marker)
    dlq = runtime.queue_url("PoisonDLQ")
    deadline = time.monotonic() + 15
    arrived: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not arrived:
        response = sqs.receive_message(
            QueueUrl=dlq, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
        )
        arrived = [m for m in response.get("Messages", []) if m["Body"] == marker]
    assert [m["MessageId"] for m in arrived] == [sent["MessageId"]]
    attempts = [r for r in records.all("poison") if sent["MessageId"] in r["ids"]]
    assert len(attempts) == 2  # the queue's maxReceiveCount


def test_the_batching_window_gathers_messages_sent_apart_into_one_batch(
    runtime: LocalRuntime,
    records: Records,
    marker: str,
) -> None:
    sqs = runtime.sqs_client()
    for n in range(3):
        sqs.send_message(
            QueueUrl=runtime.queue_url("WorkQueue"),
            MessageBody=json.dumps({"marker": marker, "n": n}),
        )
        time.sleep(0.2)
    batches = records.wait_for("batch", lambda r: any(marker in b for b in r["bodies"]))
    time.sleep(1.5)
    batches = batches_with(records, marker)
    assert sum(len(b["ids"]) for b in batches) == 3
    assert len(batches) == 1  # within the 1 s MaximumBatchingWindowInSeconds


def test_the_default_sqs_server_is_started_for_the_runtime_and_stopped_with_it(
    tmp_path: Path, records_file: Path
) -> None:
    with running_toy_app(tmp_path, records_file, sqs=RuntimeOptions().sqs) as running:
        assert running.sqs is not None and running.sqs.description.startswith("MiniStack at ")
        server = running.started_pids[0]  # the SQS server comes first, then sandboxes
        assert f"(pid {server})" in running.sqs.description
        queue = running.sqs_client().get_queue_attributes(
            QueueUrl=running.queue_url("WorkQueue"), AttributeNames=["RedrivePolicy"]
        )
        dead_letters = json.loads(queue["Attributes"]["RedrivePolicy"])["deadLetterTargetArn"]
        assert dead_letters == running.queue_arn("WorkDLQ")
    with pytest.raises(ProcessLookupError):
        os.kill(server, 0)


ATTRIBUTES = {
    "text": {"DataType": "String", "StringValue": "héllo"},
    "amount": {"DataType": "Number", "StringValue": "42.5"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xffraw"},
}


def test_message_attributes_of_every_type_reach_the_function_as_lambda_hands_them(
    runtime: LocalRuntime,
    records: Records,
    marker: str,
) -> None:
    sent = runtime.sqs_client().send_message(
        QueueUrl=runtime.queue_url("WorkQueue"),
        MessageBody=json.dumps({"marker": marker}),
        MessageAttributes=ATTRIBUTES,
    )
    (batch,) = records.wait_for("batch", lambda r: any(marker in b for b in r["bodies"]))
    record = batch["first"]
    assert record["messageAttributes"] == {
        "text": {
            "stringValue": "héllo",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "amount": {
            "stringValue": "42.5",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Number",
        },
        "blob": {
            "binaryValue": base64.b64encode(b"\x00\xffraw").decode(),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    assert record["md5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert record["body"] == json.dumps({"marker": marker})
    assert record["attributes"]["ApproximateReceiveCount"] == "1"


def test_the_pollers_client_reads_messages_and_errors_as_boto3_does(
    runtime: LocalRuntime, marker: str
) -> None:
    """The pollers' own client (sqs_poll_client.py) against boto3, on this server: the
    same messages, delete results, releases and missing-queue errors."""
    assert runtime.sqs is not None
    boto3_sqs = runtime.sqs_client()
    poll_sqs = runtime.sqs.poll_client("us-east-1", max_connections=2)
    assert type(poll_sqs).__name__ == "SqsPollClient"
    url = boto3_sqs.create_queue(QueueName=f"compare-{marker}")["QueueUrl"]
    receive = {
        "QueueUrl": url,
        "MaxNumberOfMessages": 10,
        "WaitTimeSeconds": 1,
        "MessageSystemAttributeNames": ["All"],
        "MessageAttributeNames": ["All"],
    }

    def received(client: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A message received twice (released in between), and deleted with a bad handle."""
        boto3_sqs.send_message(QueueUrl=url, MessageBody=marker, MessageAttributes=ATTRIBUTES)
        (first,) = client.receive_message(**receive)["Messages"]
        client.change_message_visibility(
            QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
        )
        (message,) = client.receive_message(**receive)["Messages"]
        deleted = client.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": "0", "ReceiptHandle": message["ReceiptHandle"]},
                {"Id": "1", "ReceiptHandle": "not-a-receipt-handle"},
            ],
        )
        message = {k: v for k, v in message.items() if k not in ("MessageId", "ReceiptHandle")}
        times = ("SentTimestamp", "ApproximateFirstReceiveTimestamp")
        message["Attributes"] = {
            k: "<time>" if k in times else v for k, v in message["Attributes"].items()
        }
        return message, [deleted.get("Successful"), deleted.get("Failed")]

    by_boto3, by_poll_client = received(boto3_sqs), received(poll_sqs)
    assert by_poll_client == by_boto3
    assert by_poll_client[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert by_poll_client[0]["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\xffraw"
    assert poll_sqs.receive_message(**{**receive, "WaitTimeSeconds": 0}).get("Messages") is None

    errors = []
    for client in (boto3_sqs, poll_sqs):
        with pytest.raises(ClientError) as raised:
            client.receive_message(**{**receive, "QueueUrl": url + "-gone"})
        errors.append(raised.value)
    assert is_missing_queue(errors[1])
    assert str(errors[1]) == str(errors[0])
