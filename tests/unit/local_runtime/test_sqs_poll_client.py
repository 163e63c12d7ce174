"""The pollers' own SQS client (sqs_poll_client.py) answers as the boto3 client it
replaces: requests a signature-checking SQS accepts, and the same errors for the
pollers to act on. And a sandbox's boto3 SQS calls to the runtime's SQS server go over
kept-alive connections, not urllib3 (kept_alive_http.py). Against a scripted HTTP
server standing in for SQS; the answers of real servers are compared in
tests/integration/local_runtime/test_local_sqs_event_sources.py."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.httpsession import URLLib3Session

from local_runtime.kept_alive_http import KeptAliveSender
from local_runtime.queue_restore import is_missing_queue
from local_runtime.sqs_poll_client import SqsPollClient

REGION = "eu-west-1"
QUEUE_URL = "http://sqs.local/000000000000/q"
RECEIVE = {
    "QueueUrl": QUEUE_URL,
    "MaxNumberOfMessages": 10,
    "WaitTimeSeconds": 0,
    "MessageSystemAttributeNames": ["All"],
    "MessageAttributeNames": ["All"],
}
MISSING_QUEUE = (
    400,
    {
        "x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender",
        "x-amzn-RequestId": "r-1",
    },
    {"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "The queue does not exist."},
)
THROTTLED = (
    400,
    {"x-amzn-query-error": "RequestThrottled;Sender"},
    {"__type": "com.amazonaws.sqs#RequestThrottled", "message": "Slow down."},
)
NOTHING = (200, {}, {})


@dataclass
class ScriptedSqs:
    """Answers requests with `answers` in turn (then with NOTHING); keeps what it got.
    With `close_after_each`, closes every connection after answering, without saying so."""

    answers: list[tuple[int, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    close_after_each: bool = False
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    connections: int = 0  # accepted
    url: str = ""


@pytest.fixture
def sqs() -> Iterator[ScriptedSqs]:
    script = ScriptedSqs()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as SQS servers

        def setup(self) -> None:
            super().setup()
            script.connections += 1

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            script.requests.append((dict(self.headers.items()), body))
            status, headers, payload = script.answers.pop(0) if script.answers else NOTHING
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/x-amz-json-1.0", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if script.close_after_each:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield script
    server.shutdown()
    server.server_close()


def lean_client(url: str) -> SqsPollClient:
    return SqsPollClient(url, region=REGION, access_key="test", secret_key="test")


def boto3_client(url: str) -> Any:
    """The client the pollers had: two attempts in all (event_sources.py)."""
    config = Config(retries={"mode": "standard", "total_max_attempts": 2})
    return boto3.session.Session().client(
        "sqs",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=config,
    )


def test_a_request_is_signed_so_that_sqs_checking_signatures_accepts_it(
    sqs: ScriptedSqs,
) -> None:
    lean_client(sqs.url).receive_message(**RECEIVE)
    ((headers, body),) = sqs.requests
    assert headers["X-Amz-Target"] == "AmazonSQS.ReceiveMessage"
    assert headers["Content-Type"] == "application/x-amz-json-1.0"
    assert json.loads(body) == RECEIVE
    # What AWS does: sign the request as received, with its date, and compare.
    received = headers.pop("Authorization")
    names = received.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    assert {"host", "x-amz-date", "x-amz-target"} <= set(names)
    signed_headers = {k: v for k, v in headers.items() if k.lower() in names}
    signed = AWSRequest(method="POST", url=sqs.url + "/", data=body, headers=signed_headers)
    signer = SigV4Auth(Credentials("test", "test"), "sqs", REGION)
    signed.context["timestamp"] = headers["X-Amz-Date"]
    canonical = signer.canonical_request(signed)
    signature = signer.signature(signer.string_to_sign(signed, canonical), signed)
    scope = f"{headers['X-Amz-Date'][:8]}/{REGION}/sqs/aws4_request"
    assert received.startswith(f"AWS4-HMAC-SHA256 Credential=test/{scope}, ")
    assert received.endswith(f", Signature={signature}")


def test_a_missing_queue_raises_what_boto3_raised_and_the_pollers_recognise(
    sqs: ScriptedSqs,
) -> None:
    errors = []
    for client in (boto3_client(sqs.url), lean_client(sqs.url)):
        sqs.answers.append(MISSING_QUEUE)
        with pytest.raises(ClientError) as raised:
            client.receive_message(**RECEIVE)
        errors.append(raised.value)
    boto3_error, lean_error = errors
    assert is_missing_queue(lean_error)  # the poller recreates the queues
    assert str(lean_error) == str(boto3_error)  # the same line in the log
    assert lean_error.response["Error"] == boto3_error.response["Error"]


def test_a_throttled_request_is_tried_once_more_as_boto3_did(sqs: ScriptedSqs) -> None:
    sqs.answers += [THROTTLED, (200, {}, {"Messages": [{"MessageId": "m", "Body": "b"}]})]
    response = lean_client(sqs.url).receive_message(**RECEIVE)
    assert response["Messages"] == [{"MessageId": "m", "Body": "b"}]
    assert len(sqs.requests) == 2


def test_a_request_throttled_twice_fails_with_boto3s_error(sqs: ScriptedSqs) -> None:
    errors = []
    for client in (boto3_client(sqs.url), lean_client(sqs.url)):
        sqs.answers += [THROTTLED, THROTTLED]
        with pytest.raises(ClientError) as raised:
            client.delete_message_batch(
                QueueUrl=QUEUE_URL, Entries=[{"Id": "0", "ReceiptHandle": "h"}]
            )
        errors.append(raised.value)
    assert str(errors[1]) == str(errors[0])  # "... (reached max retries: 1) ..."
    assert len(sqs.requests) == 4


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(
    sqs: ScriptedSqs,
) -> None:
    sqs.close_after_each = True  # as a server whose keep-alive timeout has passed
    client = lean_client(sqs.url)
    for _ in range(3):
        assert (
            client.change_message_visibility(
                QueueUrl=QUEUE_URL, ReceiptHandle="h", VisibilityTimeout=0
            )
            == {}
        )
    assert len(sqs.requests) == 3  # each sent once
    assert sqs.connections == 3


def test_connections_are_kept_alive_between_calls(sqs: ScriptedSqs) -> None:
    client = lean_client(sqs.url)
    for _ in range(3):
        client.receive_message(**RECEIVE)
    assert sqs.connections == 1


def test_an_sqs_that_is_not_there_gives_boto3s_connection_error() -> None:
    with socket.socket() as placeholder:  # a port nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{placeholder.getsockname()[1]}"
        errors = []
        for client in (boto3_client(url), lean_client(url)):
            with pytest.raises(EndpointConnectionError) as raised:
                client.receive_message(**RECEIVE)
            errors.append(raised.value)
    assert str(errors[1]) == str(errors[0])


# -- a sandbox's own SQS calls (kept_alive_http.KeptAliveSender) -------------------------


def sandbox_client(url: str, servers: list[str]) -> Any:
    """A boto3 SQS client of a sandbox whose runtime's SQS server is `servers`."""
    session = boto3.session.Session()
    sender = KeptAliveSender(servers)
    session._session.register("request-created.sqs", sender.timeouts.note)
    session._session.register("before-send.sqs", sender.send)
    return session.client(
        "sqs",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )


class ThroughUrllib3(Exception):
    """botocore's own HTTP session was used."""


@pytest.fixture
def no_urllib3(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise ThroughUrllib3

    monkeypatch.setattr(URLLib3Session, "send", refuse)


@pytest.mark.usefixtures("no_urllib3")
def test_a_sandboxs_sqs_calls_go_over_one_kept_alive_connection_not_urllib3(
    sqs: ScriptedSqs,
) -> None:
    sqs.answers = [(200, {}, {"MessageId": "m-1", "MD5OfMessageBody": "x"}), NOTHING]
    client = sandbox_client(sqs.url, [sqs.url])
    answer = client.send_message(QueueUrl=QUEUE_URL, MessageBody="hello")
    client.send_message_batch(QueueUrl=QUEUE_URL, Entries=[{"Id": "1", "MessageBody": "a"}])
    assert answer["MessageId"] == "m-1"
    assert len(sqs.requests) == 2 and sqs.connections == 1
    headers, body = sqs.requests[0]
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert json.loads(body)["MessageBody"] == "hello"


@pytest.mark.usefixtures("no_urllib3")
def test_a_sandboxs_calls_to_any_other_sqs_keep_botocores_session(sqs: ScriptedSqs) -> None:
    client = sandbox_client(sqs.url, ["http://127.0.0.1:9"])
    with pytest.raises(ThroughUrllib3):
        client.send_message(QueueUrl=QUEUE_URL, MessageBody="hello")
    assert sqs.requests == []
