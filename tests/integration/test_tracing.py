"""With template.yaml's Tracing=Active, a Lambda's steps reach X-Ray: each step is a
subsegment annotated with its order id, and its AWS calls are subsegments inside it.
Off (the default), nothing is sent. The X-Ray daemon here is a UDP socket, where the
SDK sends what the Lambda's daemon would forward."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

# A step as consumers.py runs it, with one AWS call (to an endpoint that refuses).
STEP = """
import boto3
from order_engine.telemetry import step_span
sqs = boto3.client("sqs", endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
with step_span("route", "order-1"):
    try:
        sqs.list_queues()
    except Exception:
        pass
"""


@pytest.fixture
def daemon() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3)
        yield sock


def run_step_in_lambda(daemon: socket.socket, trace_disabled: str, then: str = "") -> None:
    """Run STEP in a process set up as Lambda sets one up, then the code `then`."""
    host, port = daemon.getsockname()
    env = {
        "PATH": os.defpath,
        "PYTHONPATH": str(ROOT / "layers" / "engine" / "python"),
        # What Lambda sets for a function with active tracing.
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_LAMBDA_FUNCTION_NAME": "RouteFunction",
        "_X_AMZN_TRACE_ID": TRACE_HEADER,
        "AWS_XRAY_DAEMON_ADDRESS": f"{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        # What template.yaml sets from its Tracing parameter.
        "POWERTOOLS_TRACE_DISABLED": trace_disabled,
    }
    result = subprocess.run(
        [sys.executable, "-c", STEP + then], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def received(daemon: socket.socket) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    try:
        while True:
            _, _, body = daemon.recv(65536).decode().partition("\n")
            documents.append(json.loads(body))
            daemon.settimeout(0.5)
    except TimeoutError:
        return documents


def test_with_tracing_on_a_step_is_a_subsegment_with_its_order_id_and_aws_calls(
    daemon: socket.socket,
) -> None:
    run_step_in_lambda(daemon, trace_disabled="false")

    documents = received(daemon)  # in Lambda, each subsegment is sent when it ends
    (step,) = [d for d in documents if d["name"] == "## route"]
    assert step["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert step["parent_id"] == "53995c3f42cd8ad8"  # the invocation's segment
    assert step["annotations"] == {"order_id": "order-1"}
    calls = [(d["name"], d["aws"]["operation"]) for d in documents if d["parent_id"] == step["id"]]
    assert calls == [("sqs", "ListQueues")]


def test_with_tracing_off_nothing_is_sent(daemon: socket.socket) -> None:
    run_step_in_lambda(daemon, trace_disabled="true")

    assert received(daemon) == []


def test_with_tracing_off_the_xray_sdk_is_never_loaded(daemon: socket.socket) -> None:
    """Starting it (a disabled Powertools Tracer does) costs every cold start about
    100 ms of CPU, for spans that go nowhere."""
    loaded = "import sys\nassert 'aws_xray_sdk' not in sys.modules, 'the X-Ray SDK was loaded'"
    run_step_in_lambda(daemon, trace_disabled="true", then="\n" + loaded)
