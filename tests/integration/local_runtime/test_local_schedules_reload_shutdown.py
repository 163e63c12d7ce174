"""Schedules (sped up), --reload, and a clean shutdown."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from toy_runtime import Records, copy_toy_app, toy_options
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from local_runtime import LocalRuntime
from local_runtime.servers import ServerStartError


def get_json(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (local http)
        answer: dict[str, str] = json.loads(response.read())
        return answer


def test_a_rate_schedule_fires_an_eventbridge_event_sped_up(
    runtime: LocalRuntime,
    records: Records,
) -> None:
    before = len(records.all("tick"))
    ticks = records.wait_for("tick", lambda r: True, count=before + 2, timeout=5)
    assert len(ticks) >= before + 2  # rate(1 minute) at speed 60: about one a second
    event = ticks[-1]["event"]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert runtime.sqs is not None  # the account of the SQS in use (each emulator has its own)
    assert event["resources"] == [
        f"arn:aws:events:us-east-1:{runtime.sqs.account_id}:rule/local-TickFunctionTick"
    ]
    assert ticks[-1]["function"] == "local-TickFunction"


def test_reload_runs_the_edited_handler_on_the_next_call(tmp_path: Path) -> None:
    template = copy_toy_app(tmp_path / "app")
    options = toy_options(tmp_path / "records.jsonl", reload=True, pollers=False, schedules=False)
    with LocalRuntime(template, options) as runtime:
        assert get_json(runtime.http_url + "/hello")["hello"] == "world"
        source = tmp_path / "app" / "rest" / "app.py"
        source.write_text(source.read_text().replace('"hello": "world"', '"hello": "reloaded"'))
        deadline = time.monotonic() + 10
        answer = ""
        while time.monotonic() < deadline and answer != "reloaded":
            answer = get_json(runtime.http_url + "/hello")["hello"]
            time.sleep(0.1)
        assert answer == "reloaded"


def test_shutdown_closes_sockets_with_1001_runs_disconnect_and_leaves_no_process(
    tmp_path: Path,
) -> None:
    records = Records(tmp_path / "records.jsonl")
    options = toy_options(records.path, schedules=False)
    threads_before = set(threading.enumerate())
    runtime = LocalRuntime(copy_toy_app(tmp_path / "app"), options).start()
    pids = runtime.started_pids  # the moto server and a warm sandbox per function
    assert len(pids) == 1 + len(runtime.functions)
    with connect(runtime.ws_url(), open_timeout=10) as ws:
        ws.send("hello")
        connection_id = json.loads(ws.recv(timeout=10))["connectionId"]
        runtime.stop()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    (gone,) = [r for r in records.all("disconnect") if r["id"] == connection_id]
    assert gone["code"] == 1001
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone, not a zombie left behind
    # This runtime has no schedules; the process's other runtimes do (the session's toy
    # runtime its ticks, the end-to-end stack its sweeper), and their firings start
    # threads of their own meanwhile: those are not this runtime's leftovers.
    others = ("fire-", "lambda-TickFunction")
    leftovers = [
        t.name
        for t in threading.enumerate()
        if t not in threads_before and not t.name.startswith(others)
    ]
    assert leftovers == []  # servers, pollers and invocations all ended
    # The environment is restored (to what it was before, which may be another runtime's).
    assert os.environ.get("TOY_RECORD_FILE") != str(records.path)


def test_a_port_in_use_is_a_readable_error_and_nothing_is_left_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runtime = LocalRuntime(
            copy_toy_app(tmp_path / "app"), toy_options(tmp_path / "r.jsonl", http_port=port)
        )
        with pytest.raises(ServerStartError, match=f"HTTP API \\(port {port}\\)"):
            runtime.start()
    assert runtime.started_pids == []  # the moto server it had started is stopped again


def test_a_function_can_be_invoked_directly(runtime: LocalRuntime) -> None:
    result = runtime.invoke("WsShoutFunction", {"body": '{"text": "direct"}'})
    assert result.succeeded and result.value["body"] == '{"shouted": "DIRECT"}'
    with pytest.raises(KeyError, match="NoSuchFunction"):
        runtime.invoke("NoSuchFunction", {})
