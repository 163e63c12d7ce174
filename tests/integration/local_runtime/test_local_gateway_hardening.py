"""Hostile or careless clients against the local gateways, over real sockets: clients
that never read, bodies too big or too slow, unsigned @connections calls, messages that
name a lifecycle route, and what survives a SIGKILL of the runtime or a lost queue."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.config import Config
from test_local_http_api import call
from test_local_websocket_api import client, disconnects, echo, management
from toy_runtime import ROOT, Records, batches_with, running_toy_app

from local_runtime import LocalRuntime, http_gateway, server_protocols


def raw_socket(url: str, *, receive_buffer: int | None = None) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # before connect, so the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
    sock.settimeout(15)
    return sock


def read_status(sock: socket.socket) -> tuple[int, bytes]:
    """The status code and the rest of what arrived (up to the connection's close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def answer_to(url: str, *parts: bytes) -> tuple[int, bytes]:
    """Send `parts` over a fresh connection, in order; the status and head of the answer."""
    sock = raw_socket(url)
    try:
        for part in parts:
            sock.sendall(part)
        return read_status(sock)
    finally:
        sock.close()


def handshake(url: str, *, receive_buffer: int | None = None) -> socket.socket:
    """A WebSocket opened by hand, so the test decides when (never) to read from it."""
    parts = urlsplit(url)
    sock = raw_socket(url, receive_buffer=receive_buffer)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    status, _ = read_status(sock)
    assert status == 101
    return sock


# -- point 1: a client that never reads -------------------------------------------------


def test_a_client_that_never_reads_is_dropped_and_posts_to_it_answer_gone(
    runtime: LocalRuntime, records: Records, marker: str
) -> None:
    # Today's code would block forever: fail the test instead of hanging it.
    api = management(runtime, Config(read_timeout=15, retries={"total_max_attempts": 1}))
    with client(runtime) as reader:
        reader_id = echo(reader, "I read")["connectionId"]
        sock = handshake(runtime.ws_url(), receive_buffer=4096)
        try:
            # Its first message is answered through @connections (never read either);
            # its connection id comes from the record of that message.
            sock.sendall(_masked_text_frame(marker))
            (connected,) = records.wait_for("message", lambda r: r["body"] == marker, timeout=10)
            stuck_id = connected["id"]
            started = time.monotonic()
            with pytest.raises(api.exceptions.GoneException):
                for _ in range(400):  # 40 MB at most: far more than any socket buffer
                    api.post_to_connection(ConnectionId=stuck_id, Data=b"x" * 100_000)
            assert time.monotonic() - started < 30
            (gone,) = disconnects(records, stuck_id)
            assert gone["code"] == 1008
            # The other client, meanwhile, is served as usual.
            api.post_to_connection(ConnectionId=reader_id, Data=b"still here")
            assert reader.recv(timeout=10) == "still here"
        finally:
            sock.close()


def _masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


# -- point 5: bodies ----------------------------------------------------------------------


def test_a_body_over_10_mb_is_413_before_it_is_read_or_reaches_a_function(
    runtime: LocalRuntime,
) -> None:
    status, answer = answer_to(
        runtime.http_url,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 104857600\r\n\r\n" + b"[" * 1000,
    )
    assert status == 413
    assert b"application/json" in answer.lower()


def test_a_chunked_body_growing_past_10_mb_is_413(runtime: LocalRuntime) -> None:
    chunk = b"%x\r\n" % (1024 * 1024) + b"x" * 1024 * 1024 + b"\r\n"
    status, _ = answer_to(
        runtime.http_url,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        *[chunk] * 11,  # no Content-Length: the limit is found while reading
    )
    assert status == 413


def test_slow_huge_uploads_do_not_stall_other_requests(runtime: LocalRuntime) -> None:
    uploads = [raw_socket(runtime.http_url) for _ in range(5)]
    try:
        for sock in uploads:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n[")
        for _ in range(20):
            for sock in uploads:
                sock.sendall(b"1," * 20_000)
            started = time.monotonic()
            code, _, _ = call(runtime, "/hello")
            assert code == 200 and time.monotonic() - started < 1.0
    finally:
        for sock in uploads:
            sock.close()


# -- point 8: lifecycle routes ----------------------------------------------------------


@pytest.mark.parametrize("action", ["$disconnect", "$connect"])
def test_a_message_naming_a_lifecycle_route_goes_to_default(
    runtime: LocalRuntime, records: Records, action: str
) -> None:
    with client(runtime) as ws:
        body = json.dumps({"action": action})
        answer = echo(ws, body)  # $default answers through @connections
        assert answer["echo"] == body
        assert disconnects(records, answer["connectionId"], wait=0.5) == []


# -- point 9: @connections needs a signature --------------------------------------------


def test_an_unsigned_call_to_connections_is_refused(runtime: LocalRuntime) -> None:
    with client(runtime) as ws:
        connection_id = echo(ws, "target")["connectionId"]
        url = f"{runtime.management_url()}/@connections/{connection_id}"
        for method, data in (("POST", b"forged"), ("GET", None), ("DELETE", None)):
            request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)  # noqa: S310
            assert refused.value.code == 403
        # Nothing reached the socket, and it is still open.
        assert echo(ws, "still mine")["echo"] == "still mine"


# -- point 12: content types and upgrades on the HTTP port ----------------------------


def test_a_proxy_result_without_a_content_type_is_sent_as_json(runtime: LocalRuntime) -> None:
    code, headers, _ = call(runtime, "/hello")  # Chalice names no content type
    assert code == 200
    assert {k.lower(): v for k, v in headers.items()}["content-type"] == "application/json"


def test_a_websocket_upgrade_on_the_http_port_is_a_4xx(runtime: LocalRuntime) -> None:
    status, _ = answer_to(
        runtime.http_url,
        b"GET /hello HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    assert 400 <= status < 500


# -- point 13: slow clients, lost queues ---------------------------------------------------


def test_a_client_too_slow_with_its_headers_gets_408(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_protocols, "HEADER_TIMEOUT", 1.0)
    # ... and never the blank line that ends the headers.
    status, _ = answer_to(runtime.http_url, b"GET /hello HTTP/1.1\r\nHost: x\r\n")
    assert status == 408


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_protocols, "HEADER_TIMEOUT", 1.0)
    sock = raw_socket(runtime.http_url)
    try:
        assert sock.recv(1024) == b""  # closed, and no 408 to mistake for a reply
    finally:
        sock.close()


def test_a_client_too_slow_with_its_body_gets_408(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_gateway, "BODY_IDLE_TIMEOUT", 1.0)
    status, answer = answer_to(
        runtime.http_url, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
    )
    assert status == 408
    assert b"connection: close" in answer.lower()  # not left half-way through a request


def test_queues_lost_by_sqs_are_recreated_and_polled_again(tmp_path: Path) -> None:
    records = Records(tmp_path / "records.jsonl")
    with running_toy_app(tmp_path, records.path, schedules=False) as runtime:
        sqs = runtime.sqs_client()
        for logical_id in ("WorkQueue", "WorkDLQ"):
            sqs.delete_queue(QueueUrl=runtime.queue_url(logical_id))
        deadline = time.monotonic() + 20
        while True:  # the pollers notice and recreate the template's queues
            try:
                sqs.get_queue_url(QueueName=runtime.queues["WorkQueue"].name)
                break
            except sqs.exceptions.QueueDoesNotExist:
                assert time.monotonic() < deadline, "the queue was never recreated"
                time.sleep(0.2)
        attributes = sqs.get_queue_attributes(
            QueueUrl=runtime.queue_url("WorkQueue"), AttributeNames=["All"]
        )["Attributes"]
        assert "WorkDLQ" in runtime.queues and "RedrivePolicy" in attributes
        sqs.send_message(QueueUrl=runtime.queue_url("WorkQueue"), MessageBody='{"m": "back"}')
        deadline = time.monotonic() + 15
        while not batches_with(records, '"back"'):
            assert time.monotonic() < deadline, "the recreated queue is not polled"
            time.sleep(0.1)


# -- point 11: SIGKILL of the runtime ------------------------------------------------------

_RUN_AND_REPORT = """
import sys, time
sys.path[:0] = [{infra!r}, {tests!r}]
from toy_runtime import running_toy_app
from pathlib import Path
with running_toy_app(Path({folder!r}), Path({records!r}), schedules=False) as runtime:
    print(*runtime.started_pids, flush=True)
    time.sleep(120)
"""


def test_a_sigkilled_runtime_leaves_no_sqs_server_behind(tmp_path: Path) -> None:
    script = _RUN_AND_REPORT.format(
        infra=str(ROOT / "infra"),
        tests=str(ROOT / "tests" / "integration" / "local_runtime"),
        folder=str(tmp_path),
        records=str(tmp_path / "records.jsonl"),
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT, text=True
    )
    try:
        assert runner.stdout is not None
        line = runner.stdout.readline()
        moto_pid, *sandboxes = map(int, line.split())
        os.kill(moto_pid, 0)  # running
        assert sandboxes  # a warm sandbox per function
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        deadline = time.monotonic() + 10
        while _alive(moto_pid):
            assert time.monotonic() < deadline, f"moto server {moto_pid} outlived its runtime"
            time.sleep(0.1)
        while any(map(_alive, sandboxes)):  # they see their pipe close, or their parent go
            assert time.monotonic() < deadline, "a sandbox outlived its runtime"
            time.sleep(0.1)
    finally:
        runner.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead; it lingers only until its (new) parent reaps it.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"
