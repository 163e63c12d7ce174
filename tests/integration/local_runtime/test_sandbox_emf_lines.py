"""The EMF lines a function prints in its sandbox reach the runtime's metrics, and every
other line of its output is left alone."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_runtime.emf_metrics import EmfMetrics
from local_runtime.function_sandboxes import make_functions
from local_runtime.functions import InFlight, LambdaFunction
from local_runtime.sandbox_process import EmfTee
from local_runtime.specs import FunctionSpec

EMF_LINE = {
    "_aws": {
        "Timestamp": 1,
        "CloudWatchMetrics": [
            {
                "Namespace": "Shop",
                "Dimensions": [["service", "step"]],
                "Metrics": [{"Name": "StepTime", "Unit": "Milliseconds"}],
            }
        ],
    },
    "service": "shop",
    "step": "pack",
    "StepTime": 12.5,
    "cart_id": "c-1",
}
HANDLER = f"""
import json, sys, threading
LINE = {json.dumps(EMF_LINE)!r}
def handler(event, context):
    print("an ordinary log line")
    sys.stdout.write(LINE[:20])  # one line written in pieces
    sys.stdout.write(LINE[20:] + "\\n")
    print('{{"_aws": broken json')
    if event.get("raise"):
        raise ValueError("after printing")
    return "done"
"""


@pytest.fixture
def function(tmp_path: Path) -> Iterator[tuple[LambdaFunction, EmfMetrics]]:
    (tmp_path / "app.py").write_text(HANDLER)
    spec = FunctionSpec(
        logical_id="Shop",
        function_name="shop",
        arn="arn:aws:lambda:us-east-1:1:function:shop",
        code_dir=tmp_path,
        handler="app.handler",
        timeout=5,
    )
    metrics = EmfMetrics()
    (made,) = make_functions(
        [spec],
        {"Shop": {**os.environ}},
        InFlight(),
        correlation_keys=(),
        websocket_endpoint=None,
        runtime_cap=1,
        emf_sink=metrics.add_lines,
    ).values()
    yield made, metrics
    made.sandboxes.stop(1)


def test_emf_lines_printed_in_a_sandbox_become_metrics_and_output_still_flows(
    function: tuple[LambdaFunction, EmfMetrics],
) -> None:
    lambda_function, metrics = function
    assert lambda_function.invoke({}).value == "done"
    assert lambda_function.invoke({"raise": True}).outcome == "error"  # lines still count

    text = metrics.prometheus_text()
    assert 'Shop_StepTime_milliseconds_count{service="shop",step="pack"} 2' in text
    assert 'Shop_StepTime_milliseconds{service="shop",step="pack",quantile="0.5"} 12.5' in text
    assert "c-1" not in text and "cart_id" not in text
    assert "local_runtime_emf_rejected_lines_total 2" in text  # the broken line, twice


def test_the_tee_passes_every_write_on_and_keeps_only_whole_emf_lines() -> None:
    target = io.StringIO()
    tee = EmfTee(target)
    line = json.dumps(EMF_LINE)
    for piece in ("log one\n", line[:7], line[7:30], line[30:] + "\nlog", " two\n", "{}\n"):
        tee.write(piece)
    assert target.getvalue() == f"log one\n{line}\nlog two\n{{}}\n"
    assert tee.take() == [line]
    assert tee.take() == []
    for piece in ("x" * 1000, '{"_aws', '"} not at the start\n', '{"_a', 'ws": 1}\n'):
        tee.write(piece)
    assert tee.take() == ['{"_aws": 1}']
