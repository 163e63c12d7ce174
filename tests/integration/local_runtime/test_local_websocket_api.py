"""WebSocket clients against the local WebSocket API, and the @connections API via boto3:
over HTTP, as any client reaches it, and over the runtime's socket, as its sandboxes do
(asgi_channel.py)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.config import Config
from toy_runtime import IDLE_TIMEOUT, Records
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from local_runtime import LocalRuntime
from local_runtime.asgi_channel import SERVICE_EVENT, ChannelSender
from local_runtime.processes import free_port


def management(
    runtime: LocalRuntime, config: Config | None = None, *, as_a_sandbox: bool = False
) -> Any:
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    endpoint = runtime.management_url()
    if as_a_sandbox:
        # The socket the runtime gave its sandboxes for this API, under an origin where
        # nothing listens: a call that went over HTTP instead would fail to connect.
        origin, stage = endpoint.rsplit("/", 1)
        (path,) = {f.sandboxes.plan.channels[origin] for f in runtime.functions.values()}
        nowhere = f"http://127.0.0.1:{free_port('127.0.0.1')}"
        session._session.register(SERVICE_EVENT, ChannelSender({nowhere: path}))
        endpoint = f"{nowhere}/{stage}"
    return session.client("apigatewaymanagementapi", endpoint_url=endpoint, config=config)


@pytest.fixture(params=["over HTTP", "as a sandbox"])
def api(request: pytest.FixtureRequest, runtime: LocalRuntime) -> Any:
    return management(runtime, as_a_sandbox=request.param == "as a sandbox")


@contextmanager
def client(runtime: LocalRuntime, query: str = "") -> Iterator[ClientConnection]:
    with connect(runtime.ws_url() + query, open_timeout=10, close_timeout=5) as ws:
        yield ws


def echo(ws: ClientConnection, text: str) -> dict[str, Any]:
    ws.send(text)
    answer: dict[str, Any] = json.loads(ws.recv(timeout=10))
    return answer


def closed_code(ws: ClientConnection, timeout: float = 10) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=timeout)
    return closed.value.rcvd.code if closed.value.rcvd else None


def disconnects(records: Records, connection_id: str, wait: float = 5) -> list[dict[str, Any]]:
    return records.wait_for("disconnect", lambda r: r["id"] == connection_id, timeout=wait)


def test_a_client_connects_sends_and_gets_a_reply(runtime: LocalRuntime) -> None:
    with client(runtime) as ws:
        answer = echo(ws, "hello")
    # The reply went through Chalice's app.websocket_api.send -> the local @connections API;
    # "module": "ws" shows the WebSocket app.py did not collide with the REST app.py.
    assert answer["echo"] == "hello" and answer["module"] == "ws"


def test_connect_and_message_events_have_api_gateways_shape(
    runtime: LocalRuntime,
    records: Records,
    marker: str,
) -> None:
    with client(runtime, f"?orderId={marker}") as ws:
        connection_id = echo(ws, "shape")["connectionId"]
    (connected,) = records.wait_for("connect", lambda r: r["id"] == connection_id)
    event = connected["event"]
    assert event["queryStringParameters"] == {"orderId": marker}
    assert event["multiValueQueryStringParameters"] == {"orderId": [marker]}
    assert event["requestContext"]["eventType"] == "CONNECT"
    assert "messageId" not in event["requestContext"]
    assert "Sec-WebSocket-Key" in event["headers"]
    (message,) = records.wait_for("message", lambda r: r["id"] == connection_id)
    context = message["event"]["requestContext"]
    assert context["eventType"] == "MESSAGE" and context["routeKey"] == "$default"
    assert context["messageId"] and "headers" not in message["event"]


def test_a_route_chosen_by_the_selection_expression_answers_with_its_body(
    runtime: LocalRuntime,
) -> None:
    with client(runtime) as ws:
        ws.send(json.dumps({"action": "shout", "text": "hi"}))
        assert json.loads(ws.recv(timeout=10)) == {"shouted": "HI"}
        ws.send(json.dumps({"action": "shout", "text": "fail"}))
        failure = json.loads(ws.recv(timeout=10))
    assert failure["message"] == "Internal server error" and failure["connectionId"]


@pytest.mark.parametrize(("query", "status"), [("?reject=1", 403), ("?explode=1", 502)])
def test_a_failing_connect_handler_refuses_the_handshake(
    runtime: LocalRuntime,
    query: str,
    status: int,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(runtime.ws_url() + query, open_timeout=10)
    assert refused.value.response.status_code == status


def test_disconnect_fires_exactly_once_when_the_client_closes(
    runtime: LocalRuntime,
    records: Records,
) -> None:
    with client(runtime) as ws:
        connection_id = echo(ws, "bye")["connectionId"]
    found = disconnects(records, connection_id)
    time.sleep(0.5)  # a second $disconnect would have arrived by now
    found = disconnects(records, connection_id, wait=0)
    assert len(found) == 1
    assert found[0]["code"] == 1000


def in_frames(text: str, frame_bytes: int = 32 * 1024) -> list[str]:
    """`text` cut into WebSocket frames of at most 32 KB (ASCII: a character a byte)."""
    return [text[i : i + frame_bytes] for i in range(0, len(text), frame_bytes)]


@pytest.mark.parametrize("size", [128 * 1024 + 1, 300_000], ids=["128KB+1", "300KB"])
def test_a_message_over_128_kb_closes_the_connection_with_1009(
    runtime: LocalRuntime, records: Records, size: int
) -> None:
    with client(runtime) as ws:
        connection_id = echo(ws, "before")["connectionId"]
        # Frames within the limit, a message over it; the gateway may close the
        # connection before the client has sent its last frame.
        with contextlib.suppress(ConnectionClosed):
            ws.send(in_frames("x" * size))
        assert closed_code(ws) == 1009
    (gone,) = disconnects(records, connection_id)
    assert (gone["code"], gone["reason"]) == (1009, "Message too big")


@pytest.mark.parametrize("data", [b'{"action": "shout", "text": "hi"}', bytes(range(256))])
def test_a_binary_frame_closes_the_connection_with_1003_as_on_aws(
    runtime: LocalRuntime, records: Records, data: bytes
) -> None:
    with client(runtime) as ws:
        connection_id = echo(ws, "before")["connectionId"]
        ws.send(data)
        assert closed_code(ws) == 1003
    (gone,) = disconnects(records, connection_id)
    assert gone["code"] == 1003


def test_json_too_deep_to_select_a_route_goes_to_default_and_the_socket_lives_on(
    runtime: LocalRuntime,
) -> None:
    deep = '{"action": "shout", "orderId": "o-1", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    with client(runtime) as ws:
        assert echo(ws, deep)["echo"] == deep
        assert echo(ws, "after")["echo"] == "after"


def test_a_message_of_exactly_128_kb_in_32_kb_frames_is_accepted(runtime: LocalRuntime) -> None:
    with client(runtime) as ws:
        payload = json.dumps({"action": "shout", "text": "y" * (128 * 1024 - 40)})
        assert len(payload) <= 128 * 1024
        ws.send(in_frames(payload))  # a frame may carry 32 KB, a message 128 KB
        assert "shouted" in json.loads(ws.recv(timeout=10))


def test_post_to_connection_reaches_the_client(runtime: LocalRuntime, api: Any) -> None:
    with client(runtime) as ws:
        connection_id = echo(ws, "who am i")["connectionId"]
        api.post_to_connection(ConnectionId=connection_id, Data=b'{"pushed": true}')
        assert json.loads(ws.recv(timeout=10)) == {"pushed": True}


def test_post_to_a_closed_or_unknown_connection_raises_gone_exception(
    runtime: LocalRuntime, api: Any
) -> None:
    with client(runtime) as ws:
        connection_id = echo(ws, "soon gone")["connectionId"]
    for target in (connection_id, "NeverExisted0A="):
        with pytest.raises(api.exceptions.GoneException):
            api.post_to_connection(ConnectionId=target, Data=b"late")


def test_a_payload_over_128_kb_is_payload_too_large(runtime: LocalRuntime, api: Any) -> None:
    with client(runtime) as ws:
        connection_id = echo(ws, "big")["connectionId"]
        with pytest.raises(api.exceptions.PayloadTooLargeException):
            api.post_to_connection(ConnectionId=connection_id, Data=b"z" * (128 * 1024 + 1))


def test_get_connection_reports_connected_and_last_active_times_and_identity(
    runtime: LocalRuntime, api: Any
) -> None:
    with client(runtime) as ws:
        connection_id = echo(ws, "info")["connectionId"]
        info = api.get_connection(ConnectionId=connection_id)
    assert info["ResponseMetadata"]["HTTPStatusCode"] == 200
    # boto3 parsed the ISO 8601 timestamps into datetimes.
    assert info["ConnectedAt"] <= info["LastActiveAt"]
    assert info["ConnectedAt"].tzinfo is not None
    assert info["Identity"]["SourceIp"] == "127.0.0.1"
    assert "websockets" in info["Identity"]["UserAgent"].lower()


def test_delete_connection_closes_it_and_fires_disconnect_once(
    runtime: LocalRuntime,
    records: Records,
    api: Any,
) -> None:
    with client(runtime) as ws:
        connection_id = echo(ws, "delete me")["connectionId"]
        response = api.delete_connection(ConnectionId=connection_id)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
        assert closed_code(ws) is not None
    assert len(disconnects(records, connection_id)) == 1
    with pytest.raises(api.exceptions.GoneException):
        api.get_connection(ConnectionId=connection_id)
    with pytest.raises(api.exceptions.GoneException):
        api.delete_connection(ConnectionId=connection_id)


def test_the_stage_less_management_path_works_too(runtime: LocalRuntime) -> None:
    stage_less = runtime.management_url().rsplit("/", 1)[0]
    api = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=stage_less,
        region_name="us-east-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )
    with client(runtime) as ws:
        connection_id = echo(ws, "x")["connectionId"]
        api.post_to_connection(ConnectionId=connection_id, Data=b"via /@connections")
        assert ws.recv(timeout=10) == "via /@connections"


def test_an_idle_connection_is_closed_with_1001_after_the_idle_timeout(
    runtime: LocalRuntime,
    records: Records,
) -> None:
    with client(runtime) as ws:
        connection_id = echo(ws, "then silence")["connectionId"]
        started = time.monotonic()
        assert closed_code(ws, timeout=IDLE_TIMEOUT + 5) == 1001
        assert time.monotonic() - started >= IDLE_TIMEOUT - 1.5
    (gone,) = disconnects(records, connection_id)
    assert gone["code"] == 1001
