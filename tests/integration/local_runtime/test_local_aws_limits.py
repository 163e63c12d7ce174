"""API Gateway's and Lambda's limits, enforced by the local runtime over real sockets:
one-way WebSocket routes, the 32 KB frame, and an event source whose function may
outlive its queue's visibility timeout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_local_websocket_api import client, closed_code, disconnects, echo
from toy_runtime import Records, running_toy_app

from local_runtime import LocalRuntime
from local_runtime.template import TemplateError


def test_a_one_way_route_sends_nothing_back(runtime: LocalRuntime) -> None:
    with client(runtime) as ws:
        # Both routes run the same function, which answers with a body; only "shout"
        # has a route response. Messages of a connection are handled in order, so an
        # answer to the whisper would arrive first.
        ws.send(json.dumps({"action": "whisper", "text": "psst"}))
        ws.send(json.dumps({"action": "shout", "text": "hi"}))
        assert json.loads(ws.recv(timeout=10)) == {"shouted": "HI"}


def test_a_40_kb_frame_closes_the_connection_with_1009(
    runtime: LocalRuntime, records: Records
) -> None:
    with client(runtime) as ws:
        connection_id = echo(ws, "before")["connectionId"]
        ws.send("x" * 40 * 1024)  # one frame, well under the 128 KB message limit
        assert closed_code(ws) == 1009
    (gone,) = disconnects(records, connection_id)
    assert gone["code"] == 1009


def test_a_function_timeout_longer_than_its_queues_visibility_is_refused(
    tmp_path: Path,
) -> None:
    # BatchFunction has Timeout 2; its WorkQueue's VisibilityTimeout becomes 1.
    parameters = {"WorkVisibility": "1"}
    with (
        pytest.raises(TemplateError) as refused,
        running_toy_app(tmp_path, tmp_path / "records.jsonl", parameters=parameters),
    ):
        pass
    message = str(refused.value)
    assert "BatchFunction" in message
    assert "Timeout (2 s)" in message and "VisibilityTimeout (1 s)" in message
