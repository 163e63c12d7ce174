"""Every function in sandboxes of its own, over real sockets: Timeout stops the sandbox,
MaximumConcurrency holds through timeouts, environments stay apart, and API Gateway
gives up at its integration timeout (tests/fixtures/sandbox_app)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from toy_runtime import ROOT, Records, toy_options

from local_runtime import LocalRuntime, http_gateway
from local_runtime.rest_events import INTEGRATION_TIMEOUT_SECONDS

SANDBOX_APP = ROOT / "tests" / "fixtures" / "sandbox_app"


@pytest.fixture(scope="module")
def records_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox-records") / "records.jsonl"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, records_path: Path) -> Iterator[LocalRuntime]:
    folder = tmp_path_factory.mktemp("sandbox-app") / "app"
    shutil.copytree(SANDBOX_APP, folder, ignore=shutil.ignore_patterns("__pycache__"))
    options = toy_options(records_path, schedules=False)
    options.extra_env = {"SANDBOX_RECORD_FILE": str(records_path)}
    with LocalRuntime(folder / "template.yaml", options) as running:
        yield running


@pytest.fixture
def records(records_path: Path) -> Records:
    return Records(records_path)


def send(runtime: LocalRuntime, queue: str, *markers: str) -> None:
    client = runtime.sqs_client()
    for marker in markers:
        client.send_message(
            QueueUrl=runtime.queue_url(queue), MessageBody=json.dumps({"marker": marker})
        )


def get(url: str, timeout: float = 10) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (local)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_handler_past_its_timeout_is_stopped_and_its_batch_comes_back_to_a_fresh_sandbox(
    app: LocalRuntime, records: Records
) -> None:
    marker = uuid.uuid4().hex
    send(app, "SleepQueue", marker)
    runs = records.wait_for(
        "started", lambda r: marker in r["markers"] and r["receives"] == [2], timeout=15
    )
    assert runs, "the timed-out batch never came back"
    first, *_ = records.wait_for("started", lambda r: marker in r["markers"])
    assert first["receives"] == [1]
    assert runs[0]["pid"] != first["pid"]  # the timed-out sandbox was replaced
    # The first run would have written "late" one second after its Timeout: give it
    # twice that, counted from its start.
    time.sleep(max(0.0, first["at"] + 1 + 2 - time.time()))
    assert [r for r in records.all("late") if marker in r["markers"]] == []


def test_maximum_concurrency_holds_when_every_invocation_times_out(
    app: LocalRuntime, records: Records
) -> None:
    marker = uuid.uuid4().hex
    send(app, "TickQueue", *[marker] * 6)
    # 6 batches, 2 at a time, each stopped after its 1 s Timeout: about 3 s in all.
    ticks = records.wait_for("tick", lambda r: r["marker"] == marker, count=10_000, timeout=6)
    spans: dict[str, list[float]] = {}
    for tick in ticks:
        span = spans.setdefault(tick["request"], [tick["at"], tick["at"]])
        span[1] = max(span[1], tick["at"])
    assert len(spans) >= 4  # the later batches ran too
    moments = sorted(t for span in spans.values() for t in span)
    running_at_once = max(
        sum(start <= moment <= end for start, end in spans.values()) for moment in moments
    )
    assert running_at_once <= 2
    assert max(end - start for start, end in spans.values()) < 1.5  # stopped at Timeout


def test_a_burst_waits_in_the_queue_not_in_the_runtime_so_no_message_is_received_twice(
    app: LocalRuntime, records: Records
) -> None:
    # Ten messages at once for a function with one warm sandbox, 1 s invocations and 3 s
    # cold starts (as on a busy machine): most must wait for a sandbox. A message the
    # poller took meanwhile would outwait its 3 s visibility timeout and be received
    # again (running twice, and counting toward the dead-letter queue) although its
    # function never failed; waiting in the queue, each is received once.
    marker = uuid.uuid4().hex
    sent = [f"{marker}-{n}" for n in range(10)]
    send(app, "ColdStartQueue", *sent)
    mine = lambda r: r["marker"].startswith(marker)  # noqa: E731
    records.wait_for("worked", mine, count=len(sent), timeout=40)
    time.sleep(4)  # a message received twice would have its second run by now
    runs = [r for r in records.all("worked") if mine(r)]
    assert [(r["marker"], r["receives"]) for r in runs if r["receives"] != 1] == []
    assert sorted(r["marker"] for r in runs) == sorted(sent)  # each ran once


def test_functions_see_only_their_own_environment(app: LocalRuntime) -> None:
    status, red = get(f"{app.http_url}/env/red")
    assert status == 200
    status, blue = get(f"{app.http_url}/env/blue")
    assert status == 200
    assert (red["COLOR"], blue["COLOR"]) == ("red", "blue")
    assert red["ONLY_RED"] == "1" and blue["ONLY_RED"] is None
    # Red overrides a Globals variable; Blue keeps the Globals value.
    assert (red["GREETING"], blue["GREETING"]) == ("bonjour", "hello")
    assert red["SHARED"] == blue["SHARED"] == "from-globals"
    assert red["AWS_LAMBDA_FUNCTION_NAME"] != blue["AWS_LAMBDA_FUNCTION_NAME"]
    assert "RedFunction" in red["AWS_LAMBDA_FUNCTION_NAME"]
    assert red["pid"] != blue["pid"]


def test_a_function_still_running_at_the_integration_timeout_gets_a_504(
    app: LocalRuntime, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert INTEGRATION_TIMEOUT_SECONDS == 29.0  # API Gateway's default
    # The gateway's wait is shortened here (the test would otherwise idle half a minute);
    # the handler outlives it by the same two seconds it outlives 29 s by in the template.
    monkeypatch.setattr(http_gateway, "INTEGRATION_TIMEOUT_SECONDS", 2.0)
    marker = uuid.uuid4().hex
    started = time.monotonic()
    status, body = get(f"{app.http_url}/late?marker={marker}&seconds=4", timeout=40)
    waited = time.monotonic() - started
    assert (status, body) == (504, {"message": "Endpoint request timed out"})
    assert 1.5 <= waited < 4
    # The function itself runs on (its Timeout is 40 s) and finishes at 4 s.
    assert records.wait_for("answered", lambda r: r["marker"] == marker, timeout=6)
