"""`order-engine lab bench-sqs`: the stack's SQS traffic replayed on a moto server it starts.

Not a timed test: it checks that every replayed order passes all five queues and that
the traffic is the stack's own, eight published messages per order.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from order_engine_cli.main import cli


def test_every_replayed_order_passes_five_queues_with_eight_messages(tmp_path: Path) -> None:
    report_path = tmp_path / "bench-sqs.json"
    result = CliRunner().invoke(
        cli,
        [
            "lab",
            "bench-sqs",
            "--sqs",
            "moto",
            "--orders",
            "12",
            "--rate",
            "600",
            "--json",
            str(report_path),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["completed"] == 12, report
    calls = report["sqs_calls_per_order"]
    assert calls["SendMessageBatch"] == 8.0
    # Every message is received at least once; ten can share one receive.
    assert calls["ReceiveMessage"] >= 8 / 10, calls
    assert 0 < calls["DeleteMessageBatch"] <= 8, calls
    assert report["latency_seconds"]["count"] == 12
    assert report["cpu_ms_per_order"]["sqs_server"] > 0
