"""Real-shaped Lambda events for handler-level tests, each with a unique id.

Shapes follow AWS (see shared/reference/aws-semantics.md §2): SQS records as Lambda's
event source mapping delivers them, WebSocket events as API Gateway sends them.
Chalice's own `generate_sqs_event` repeats one messageId, which would hide exactly
the bugs partial batch responses are about.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"


def sqs_record(
    body: str | Mapping[str, Any],
    *,
    queue: str = "order-engine-route",
    receipt_handle: str | None = None,
    receive_count: int = 1,
    message_id: str | None = None,
) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    now_ms = str(int(time.time() * 1000))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": receipt_handle or f"handle-{uuid.uuid4().hex}",
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": now_ms,
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": now_ms,
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
        "awsRegion": REGION,
    }


def sqs_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def _ws_request_context(route_key: str, event_type: str, connection_id: str) -> dict[str, Any]:
    now = time.time()
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": uuid.uuid4().hex[:16],
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "messageDirection": "IN",
        "stage": "v1",
        "connectedAt": int(now * 1000),
        "requestTimeEpoch": int(now * 1000),
        "identity": {"sourceIp": "127.0.0.1"},
        "requestId": uuid.uuid4().hex[:16],
        "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
        "connectionId": connection_id,
        "apiId": "abcdef1234",
    }


def new_connection_id() -> str:
    return uuid.uuid4().hex[:14] + "="


def ws_connect_event(
    connection_id: str,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    headers = {
        "Host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": uuid.uuid4().hex,
        **(headers or {}),
    }
    event: dict[str, Any] = {
        "headers": headers,
        "multiValueHeaders": {key: [value] for key, value in headers.items()},
        "requestContext": _ws_request_context("$connect", "CONNECT", connection_id),
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(query)
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return event


def ws_message_event(connection_id: str, body: str | Mapping[str, Any]) -> dict[str, Any]:
    context = _ws_request_context("$default", "MESSAGE", connection_id)
    context["messageId"] = uuid.uuid4().hex[:16]
    return {
        "requestContext": context,
        "body": body if isinstance(body, str) else json.dumps(body),
        "isBase64Encoded": False,
    }


def ws_disconnect_event(connection_id: str) -> dict[str, Any]:
    context = _ws_request_context("$disconnect", "DISCONNECT", connection_id)
    context.update(disconnectStatusCode=1001, disconnectReason="")
    headers = {"Host": "abcdef1234.execute-api.us-east-1.amazonaws.com", "x-api-key": ""}
    return {
        "headers": headers,
        "multiValueHeaders": {key: [value] for key, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }
