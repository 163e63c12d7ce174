"""SQS pollers in worker processes (worker_processes=N): the same Lambda semantics, run
outside the gateways' interpreter, and nothing left running after stop."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from toy_runtime import Records, batches_with, running_toy_app

from local_runtime import LocalRuntime
from local_runtime.processes import pid_alive

VISIBILITY_SECONDS = 8


@pytest.fixture(scope="module")
def records_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-records") / "records.jsonl"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, records_file: Path) -> Iterator[LocalRuntime]:
    folder = tmp_path_factory.mktemp("toy-workers")
    # A visibility timeout long enough that a busy machine never redelivers a message
    # whose batch is still running (the toy app's 2 s is meant for quick retries).
    parameters = {"WorkVisibility": str(VISIBILITY_SECONDS)}
    with running_toy_app(
        folder, records_file, worker_processes=2, parameters=parameters
    ) as running:
        yield running


def test_queue_messages_are_handled_in_the_workers_with_partial_batches_intact(
    runtime: LocalRuntime, records_file: Path
) -> None:
    records, marker = Records(records_file), uuid.uuid4().hex
    workers = set(runtime.started_pids[1:])  # the first is the moto server
    assert len(workers) == 2 and os.getpid() not in workers
    entries = [
        {"Id": str(i), "MessageBody": json.dumps({"marker": marker, "fail": i == 2})}
        for i in range(6)
    ]
    sent = runtime.sqs_client().send_message_batch(
        QueueUrl=runtime.queue_url("WorkQueue"), Entries=entries
    )
    failing = next(e["MessageId"] for e in sent["Successful"] if e["Id"] == "2")

    # Only the failed message comes back (after the visibility timeout, with count 2).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _split_at_redelivery(records, marker, failing)[1]:
        time.sleep(0.1)
    time.sleep(3)  # a handled message that was never deleted would be back by now too
    first, redelivered = _split_at_redelivery(records, marker, failing)
    assert redelivered, f"{failing} never came back: {first}"
    assert {i for b in redelivered for i in b["ids"]} == {failing}
    assert all(count != "1" for b in redelivered for count in b["counts"])
    # A standard queue delivers at least once: moto can hand one message to two
    # concurrent long polls, so the first deliveries are compared as a set.
    assert {i for b in first for i in b["ids"]} == {e["MessageId"] for e in sent["Successful"]}
    assert {b["pid"] for b in first + redelivered} <= workers


def _split_at_redelivery(
    records: Records, marker: str, failing: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The batches of the first delivery, and those received once the failing message's
    visibility timeout ran out. Half the timeout after its first receipt is the line:
    concurrent copies of one delivery arrive together, a redelivery a timeout later."""
    batches = batches_with(records, marker)
    receipts = [b["at"] for b in batches if failing in b["ids"]]
    line = min(receipts) + VISIBILITY_SECONDS / 2 if receipts else float("inf")
    return [b for b in batches if b["at"] < line], [b for b in batches if b["at"] >= line]


def test_the_banner_says_where_the_pollers_run(runtime: LocalRuntime) -> None:
    text = runtime.describe()
    assert "BatchFunction/Work <- local-WorkQueue" in text
    assert "pollers run in  2 worker processes" in text


def test_stop_ends_every_worker(tmp_path: Path) -> None:
    with running_toy_app(tmp_path, tmp_path / "r.jsonl", worker_processes=2) as rt:
        workers = rt.started_pids[1:]
        assert len(workers) == 2 and all(pid_alive(pid) for pid in workers)
    assert not any(pid_alive(pid) for pid in workers)
