"""How long a message waits in an idle queue before its function runs, on MiniStack.

MiniStack answers a long poll by looking at the queue every 100 ms, so one receive loop
per mapping left each message waiting 50 ms on average and up to 100 ms: a cost paid on
every hop of every SQS chain. Lambda runs several pollers per mapping (five to start
with); started apart, they look at the queue several times in those 100 ms.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from toy_runtime import Records, toy_options

from local_runtime import LocalRuntime

TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Resources:
  StampFunction:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.11
      CodeUri: code/
      Handler: stamp.handler
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 1
  WorkQueue:
    Type: AWS::SQS::Queue
"""

HANDLER = """\
import json, os, time

def handler(event, context):
    now = time.time()
    with open(os.environ["STAMP_FILE"], "a") as out:
        for record in event["Records"]:
            attributes = record["attributes"]
            out.write(json.dumps({
                "kind": "stamp",
                "at": now,
                "sent": json.loads(record["body"])["sent"],
                "sqs_sent_ms": int(attributes["SentTimestamp"]),
                "sqs_received_ms": int(attributes["ApproximateFirstReceiveTimestamp"]),
            }) + "\\n")
"""

WARM_UP = 3  # the first messages start the sandbox: a cold start, not a poll
SAMPLES = 20


@pytest.fixture(scope="module")
def stamps_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stamps") / "stamps.jsonl"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, stamps_path: Path) -> Iterator[LocalRuntime]:
    folder = tmp_path_factory.mktemp("stamp-app")
    (folder / "code").mkdir()
    (folder / "code" / "stamp.py").write_text(HANDLER)
    (folder / "template.yaml").write_text(TEMPLATE)
    # `up`'s own long poll (20 s) on the default SQS, whatever the suite runs on.
    options = toy_options(stamps_path, sqs="ministack", schedules=False, poll_wait_seconds=20)
    options.extra_env = {"STAMP_FILE": str(stamps_path)}
    with LocalRuntime(folder / "template.yaml", options) as running:
        yield running


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def test_a_message_sent_to_an_idle_queue_reaches_its_function_in_a_fraction_of_100_ms(
    app: LocalRuntime, stamps_path: Path
) -> None:
    client = app.sqs_client()
    url = app.queue_url("WorkQueue")
    records = Records(stamps_path)
    for sent in range(WARM_UP + SAMPLES):
        # A pause of random length: the sends fall anywhere within MiniStack's 100 ms.
        time.sleep(random.uniform(0.15, 0.35))
        client.send_message(QueueUrl=url, MessageBody=json.dumps({"sent": time.time()}))
        assert records.wait_for("stamp", lambda r: True, count=sent + 1, timeout=10)[sent:]
    stamps = records.all("stamp")[WARM_UP:]
    to_handler_ms = [(s["at"] - s["sent"]) * 1000 for s in stamps]
    in_queue_ms = [float(s["sqs_received_ms"] - s["sqs_sent_ms"]) for s in stamps]
    seen = (
        f"send to handler p50 {statistics.median(to_handler_ms):.0f} ms, "
        f"p90 {percentile(to_handler_ms, 0.9):.0f} ms; "
        f"in the queue p50 {statistics.median(in_queue_ms):.0f} ms, "
        f"p90 {percentile(in_queue_ms, 0.9):.0f} ms"
    )
    # One receive loop: in the queue uniform over 0-100 ms (p50 50, p90 90), plus the
    # invocation. Five started apart: 0-20 ms, 0-40 ms should their starts drift
    # together. The bounds leave room for a loaded machine and still fail at one loop.
    assert statistics.median(in_queue_ms) < 30, seen
    assert percentile(in_queue_ms, 0.9) < 60, seen
    assert percentile(to_handler_ms, 0.9) < 80, seen
