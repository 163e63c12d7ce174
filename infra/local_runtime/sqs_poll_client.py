"""The SQS calls of the runtime's own pollers, spoken straight to a local SQS server.

A receive loop, its deletes and its releases make three calls: ReceiveMessage,
DeleteMessageBatch and ChangeMessageVisibility. Through botocore each one costs the
runtime 0.7-0.9 ms of CPU (models, parameter validation, event hooks, endpoint rules,
retry handlers, urllib3), a third of `order-engine up`'s CPU per order at a steady
600 orders/min. Here a call is SQS's JSON protocol over http.client: one JSON body,
signed by botocore's own SigV4Auth, on a connection kept alive between calls
(kept_alive_http.py); about a third of botocore's CPU, most of the rest being
http.client and the socket itself.

It answers exactly as a boto3 client does for these three calls, for the code around
them: the same keyword arguments, the same parsed response (message attributes'
binary values as bytes), the same exceptions (botocore's ClientError with the same
Error.Code, so a lost queue still reads as one; its connection errors; one retry of a
throttled, 5xx or unreachable request, as the pollers' boto3 clients were configured).
It leaves out what nobody here reads: the response's ResponseMetadata.

Only for SQS servers on this machine or a LAN (sqs_backends.SqsTarget.poll_client);
the real SQS keeps boto3, whose credential refresh, endpoint resolution, proxies and CA
bundles matter there more than its CPU.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.retries.standard import (
    RetryContext,
    ThrottledRetryableChecker,
    TransientRetryableChecker,
)

from local_runtime.kept_alive_http import KeptAliveHttp

TIMEOUT_SECONDS = 60  # botocore's connect and read timeouts; a long poll lasts up to 20 s
# What botocore's standard retry mode retries on an error answer: a transient code or
# status (500, 502, 503, 504), or a throttling code. Its own checkers, so the two agree.
RETRYABLE = (TransientRetryableChecker(), ThrottledRetryableChecker())


class _Retry(Exception):
    """An attempt failed in a way worth one more (the error to raise if none is left)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class SqsPollClient:
    """ReceiveMessage, DeleteMessageBatch and ChangeMessageVisibility, boto3-compatible.

    Safe to share between threads: each call takes an idle kept-alive connection (or
    opens one) and gives it back after a complete answer.
    """

    def __init__(
        self,
        endpoint_url: str,
        *,
        region: str,
        access_key: str,
        secret_key: str,
        max_attempts: int = 2,
        verify_tls: bool = True,
    ) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) SQS endpoint: {endpoint_url!r}")
        self.endpoint_url = endpoint_url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path or "/"
        self._url = f"{parts.scheme}://{parts.netloc}{self._path}"  # as botocore's errors say
        # What botocore signs as Host: no default port, an IPv6 address in brackets.
        host = f"[{self._host}]" if ":" in self._host else self._host
        default_port = 443 if self._https else 80
        self._host_header = host if self._port in (None, default_port) else f"{host}:{self._port}"
        self._signer = SigV4Auth(Credentials(access_key, secret_key), "sqs", region)
        self._attempts = max(1, max_attempts)
        # As boto3 was told: localstack-client does not verify an emulator's certificate.
        self._http = KeptAliveHttp(
            f"{parts.scheme}://{parts.netloc}", timeout=TIMEOUT_SECONDS, verify_tls=verify_tls
        )

    # -- the calls ---------------------------------------------------------------------

    def receive_message(self, **parameters: Any) -> dict[str, Any]:
        response = self._call("ReceiveMessage", parameters)
        for message in response.get("Messages") or ():
            for value in (message.get("MessageAttributes") or {}).values():
                # Blobs: base64 on the wire, bytes from boto3 (sqs_records encodes them again).
                if "BinaryValue" in value:
                    value["BinaryValue"] = base64.b64decode(value["BinaryValue"])
                if value.get("BinaryListValues"):
                    value["BinaryListValues"] = [
                        base64.b64decode(item) for item in value["BinaryListValues"]
                    ]
        return response

    def delete_message_batch(self, **parameters: Any) -> dict[str, Any]:
        return self._call("DeleteMessageBatch", parameters)

    def change_message_visibility(self, **parameters: Any) -> dict[str, Any]:
        return self._call("ChangeMessageVisibility", parameters)

    # -- the protocol ------------------------------------------------------------------

    def _call(self, operation: str, parameters: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(parameters).encode()
        for attempt in range(1, self._attempts + 1):
            try:
                return self._attempt(operation, body, retries=attempt - 1)
            except _Retry as retry:
                if attempt == self._attempts:
                    raise retry.error from None
                # botocore's standard backoff: up to 1 s before the first retry.
                time.sleep(random.random() * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _attempt(self, operation: str, body: bytes, *, retries: int) -> dict[str, Any]:
        headers = self._signed_headers(operation, body)
        try:
            answer, data = self._http.exchange("POST", self._path, body, headers)
        except (EndpointConnectionError, ReadTimeoutError, ConnectionClosedError) as error:
            raise _Retry(error) from None
        if answer.status == 200:
            return json.loads(data) if data else {}
        failure = self._client_error(operation, answer, data, retries)
        context = RetryContext(
            attempt_number=retries + 1,
            parsed_response=failure.response,
            http_response=SimpleNamespace(status_code=answer.status),
        )
        if any(checker.is_retryable(context) for checker in RETRYABLE):
            if retries + 1 == self._attempts and retries:
                failure = self._client_error(operation, answer, data, retries, given_up=True)
            raise _Retry(failure)
        raise failure

    def _signed_headers(self, operation: str, body: bytes) -> dict[str, str]:
        request = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "Host": self._host_header,
                "X-Amz-Target": f"AmazonSQS.{operation}",
                # As botocore sends it for SQS (awsQueryCompatible): servers answer
                # errors with the query protocol's codes in x-amzn-query-error.
                "x-amzn-query-mode": "true",
            },
        )
        self._signer.add_auth(request)
        return dict(request.headers.items())

    def _client_error(
        self,
        operation: str,
        answer: http.client.HTTPResponse,
        data: bytes,
        retries: int,
        *,
        given_up: bool = False,
    ) -> ClientError:
        """The ClientError botocore's JSON parser makes of an error answer."""
        try:
            body = json.loads(data) if data else {}
        except ValueError:
            body = {"message": data.decode(errors="replace")}
        if not isinstance(body, dict):
            body = {}
        error: dict[str, str] = {"Message": body.get("message", body.get("Message", ""))}
        code = str(body.get("__type", answer.status))
        code = code.split(":", 1)[0].rsplit("#", 1)[-1]
        legacy = (answer.getheader("x-amzn-query-error") or "").split(";")
        if len(legacy) == 2 and legacy[0]:
            error["QueryErrorCode"] = code
            error["Type"] = legacy[1]
            code = legacy[0]
        error["Code"] = code
        metadata: dict[str, Any] = {"HTTPStatusCode": answer.status, "RetryAttempts": retries}
        request_id = answer.getheader("x-amzn-RequestId")
        if request_id:
            metadata["RequestId"] = request_id
        if given_up:  # botocore's message then says "(reached max retries: N)"
            metadata["MaxAttemptsReached"] = True
        response: Any = {"Error": error, "ResponseMetadata": metadata}
        return ClientError(response, operation)
