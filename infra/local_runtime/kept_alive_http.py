"""Requests to an SQS server of this machine over kept-alive http.client connections.

Two callers send the local SQS server most of its requests: the runtime's pollers
(sqs_poll_client.py) and the functions' own sends, four SendMessageBatch per order in
this project. Through botocore's HTTP session each request also pays urllib3 (its pool,
timeouts and retries objects, a check that the connection is alive) on top of
http.client: about half of a botocore call's CPU in a sandbox at 600 orders a minute.
Here a request is http.client alone, on a connection kept alive between requests, and
the connection errors are botocore's own, so code above reads them as it would.

- `KeptAliveHttp` keeps the connections to one server, for any thread.
- `route_sqs_over_kept_alive`, in a sandbox, registers a botocore `before-send` handler
  for SQS in every botocore session (boto3's default one and any a handler makes): a
  request to one of the given servers goes over `KeptAliveHttp`, any other over
  botocore's own session. botocore still builds, signs and parses every call.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from local_runtime.botocore_transport import (
    ClientReadTimeouts,
    RawBody,
    body_bytes,
    header_text,
    origin_and_target,
    register_in_every_session,
)

IDLE_CONNECTIONS = 10  # kept for reuse, as botocore's pool keeps by default


class KeptAliveHttp:
    """Kept-alive connections to the server at `origin` (scheme://host:port); safe to
    share between threads: a request takes an idle connection (or opens one) and gives
    it back after a complete answer."""

    def __init__(self, origin: str, *, timeout: float, verify_tls: bool = True) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {origin!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._timeout = timeout
        self._tls = ssl.create_default_context()
        if not verify_tls:
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE
        self._idle: list[http.client.HTTPConnection] = []
        self._idle_lock = threading.Lock()

    def exchange(
        self,
        method: str,
        target: str,
        body: bytes,
        headers: dict[str, str],
        *,
        timeout: float | None = None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One request and its whole answer. Raises botocore's EndpointConnectionError
        (no connection), ReadTimeoutError or ConnectionClosedError."""
        url = self.origin + target  # as botocore's errors name it
        connection, reused = self._connection()
        try:
            try:
                answer, data = self._send(connection, method, target, body, headers, timeout)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if not reused:
                    raise
                # The server closed the idle connection (its keep-alive timeout) before
                # this request reached it: the same request on a new connection, at once.
                connection.close()
                connection = self._new_connection()
                answer, data = self._send(connection, method, target, body, headers, timeout)
        except _Unreachable as unreachable:
            connection.close()
            raise EndpointConnectionError(endpoint_url=url, error=unreachable.error) from None
        except TimeoutError as timed_out:
            connection.close()
            raise ReadTimeoutError(endpoint_url=url, error=timed_out) from None
        except (OSError, http.client.HTTPException) as closed:
            connection.close()
            raise ConnectionClosedError(endpoint_url=url, error=closed) from None
        if answer.will_close:
            connection.close()
        else:
            self._give_back(connection)
        return answer, data

    def _send(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        target: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float | None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        if connection.sock is None:
            try:
                connection.connect()
            except OSError as error:
                raise _Unreachable(error) from None
        connection.sock.settimeout(self._timeout if timeout is None else timeout)
        connection.request(method, target, body, headers)
        answer = connection.getresponse()
        return answer, answer.read()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection (reused: True), or a new one."""
        with self._idle_lock:
            if self._idle:
                return self._idle.pop(), True
        return self._new_connection(), False

    def _new_connection(self) -> http.client.HTTPConnection:
        """Not connected yet (connect() sets TCP_NODELAY: requests are small)."""
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._tls
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._idle_lock:
            if len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()


class _Unreachable(Exception):
    """Connecting failed: botocore's EndpointConnectionError."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


# -- a sandbox's SQS calls ---------------------------------------------------------------


class KeptAliveSender:
    """botocore's handlers for SQS requests to the given servers: `timeouts.note`, for
    `request-created`, keeps the client's read timeout, and `send`, for `before-send`,
    sends the request over a kept-alive connection (None, for botocore's
    own session, to any other server)."""

    DEFAULT_TIMEOUT = 60.0  # botocore's default read timeout

    def __init__(self, origins: Iterable[str]) -> None:
        servers = (KeptAliveHttp(origin, timeout=self.DEFAULT_TIMEOUT) for origin in origins)
        self._servers = {server.origin: server for server in servers}
        self.timeouts = ClientReadTimeouts()

    def send(self, **event: Any) -> Any:
        request = event["request"]  # botocore.awsrequest.AWSPreparedRequest
        origin, target = origin_and_target(request.url)
        server = self._servers.get(origin)
        if server is None:
            return None
        headers = {name: header_text(value) for name, value in request.headers.items()}
        answer, data = server.exchange(
            request.method,
            target,
            body_bytes(request.body),
            headers,
            timeout=self.timeouts.current(),
        )
        headers_back = HTTPHeaders.from_pairs(answer.getheaders())
        return AWSResponse(request.url, answer.status, headers_back, RawBody(data))


def route_sqs_over_kept_alive(origins: Iterable[str]) -> None:
    """In a sandbox: send the SQS calls to `origins` of every botocore session made here,
    and of boto3's default session, over kept-alive http.client connections."""
    origins = list(origins)
    if not origins:
        return
    sender = KeptAliveSender(origins)
    register_in_every_session(
        [("request-created.sqs", sender.timeouts.note), ("before-send.sqs", sender.send)]
    )
