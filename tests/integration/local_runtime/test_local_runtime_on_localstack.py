"""The same template on LocalStack run on the host (its own venv, Python >= 3.12)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from toy_runtime import Records, copy_toy_app, toy_options

from local_runtime import LocalRuntime
from local_runtime.localstack_host import find_python312

pytestmark = [
    pytest.mark.localstack,
    pytest.mark.skipif(find_python312() is None, reason="LocalStack needs a Python >= 3.12"),
    pytest.mark.timeout(900),  # the first run builds LocalStack's venv
]


def test_queues_are_created_and_an_sqs_triggered_function_runs_on_localstack(
    tmp_path: Path,
    marker: str,
) -> None:
    records = Records(tmp_path / "records.jsonl")
    options = toy_options(records.path, sqs="localstack", schedules=False)
    with LocalRuntime(copy_toy_app(tmp_path / "app"), options) as runtime:
        assert runtime.sqs is not None and "LocalStack" in runtime.sqs.description
        server = runtime.started_pids[0]  # the SQS server comes first, then sandboxes
        assert f"(pid {server})" in runtime.sqs.description  # LocalStack, started by us ...
        sqs = runtime.sqs_client()
        work = sqs.get_queue_attributes(
            QueueUrl=runtime.queue_url("WorkQueue"), AttributeNames=["All"]
        )["Attributes"]
        assert work["VisibilityTimeout"] == "2"
        redrive = json.loads(work["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == runtime.queue_arn("WorkDLQ")
        assert int(redrive["maxReceiveCount"]) == 3
        fifo = sqs.get_queue_attributes(
            QueueUrl=runtime.queue_url("OrdersFifo"), AttributeNames=["All"]
        )["Attributes"]
        assert (fifo["FifoQueue"], fifo["ContentBasedDeduplication"]) == ("true", "true")
        assert runtime.queue_arn("WorkQueue").startswith("arn:aws:sqs:us-east-1:000000000000:")

        sent = sqs.send_message(
            QueueUrl=runtime.queue_url("WorkQueue"), MessageBody=json.dumps({"marker": marker})
        )
        (batch,) = records.wait_for(
            "batch", lambda r: any(marker in b for b in r["bodies"]), timeout=20
        )
        assert batch["ids"] == [sent["MessageId"]]
        assert batch["first"]["eventSourceARN"] == runtime.queue_arn("WorkQueue")
    with pytest.raises(ProcessLookupError):
        os.kill(server, 0)  # ... and stopped with the runtime
