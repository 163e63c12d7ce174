"""Real AWS-protocol endpoints for tests: SQS from a moto server, and a recording
API Gateway management API (moto's accepts posts but never answers 410, and keeps
messages as one concatenated byte string, so it cannot show what a client received).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from moto.server import ThreadedMotoServer

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on a free port; yields its endpoint URL.

    All moto servers of one process share moto's in-memory backend: give queues names
    unique to their fixture, or two fixtures will collide (QueueAlreadyExists)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def create_queues(
    sqs: Any, names: list[str], *, max_receive_count: int = 5, visibility_timeout: int = 30
) -> dict[str, str]:
    """Each queue with its DLQ (`<name>-dlq`); returns URLs by name, DLQs included."""
    urls: dict[str, str] = {}
    for name in names:
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
        urls[name] = sqs.create_queue(
            QueueName=name,
            Attributes={
                "RedrivePolicy": json.dumps(redrive),
                "VisibilityTimeout": str(visibility_timeout),
            },
        )["QueueUrl"]
        urls[f"{name}-dlq"] = dlq_url
    return urls


class _Server(ThreadingHTTPServer):
    # Every post is a connection of its own (HTTP/1.0), and a batch's records post at
    # once: socketserver's backlog of 5 overflowed under load, and a refused SYN waited
    # out the client's 1 s connect timeout (a failed delivery the test did not cause).
    request_queue_size = 128


class ManagementApi:
    """POST /{stage}/@connections/{id}: records each message per connection, or
    answers 410 GoneException (with the header boto3 maps) for closed connections,
    429 LimitExceededException for throttled ones, and nothing at all for `stalled`
    ones (a client that does not read) until `STALL_SECONDS` have passed."""

    STALL_SECONDS = 8.0

    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.gone: set[str] = set()
        self.throttled: set[str] = set()
        self.stalled: set[str] = set()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_port}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                connection_id = unquote(self.path.rsplit("/@connections/", 1)[-1])
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if connection_id in api.stalled:
                    api._released.wait(api.STALL_SECONDS)
                if connection_id in api.gone:
                    self.send_response(410)
                    self.send_header("x-amzn-ErrorType", "GoneException")
                    payload = b'{"message": null}'
                elif connection_id in api.throttled:
                    self.send_response(429)
                    self.send_header("x-amzn-ErrorType", "LimitExceededException")
                    payload = b'{"message": "Rate exceeded"}'
                else:
                    with api._lock:
                        api.received[connection_id].append(json.loads(body))
                    self.send_response(200)
                    payload = b""
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def messages(self, connection_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received[connection_id])

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
