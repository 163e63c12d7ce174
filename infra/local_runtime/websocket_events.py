"""API Gateway WebSocket (Lambda proxy) events: $connect, MESSAGE and $disconnect.

Shapes follow real captures: CONNECT has headers and no messageId or body; MESSAGE has
messageId and body and no headers; DISCONNECT has a few headers and the close code and
reason. Route selection evaluates the API's RouteSelectionExpression on the JSON body.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local_runtime.rest_events import clf_time


def new_connection_id() -> str:
    """An id shaped like API Gateway's (e.g. 'BFHPhfCWIAMCKlQ='), safe in a URL path."""
    while True:
        candidate = base64.b64encode(secrets.token_bytes(10)).decode()
        if "/" not in candidate and "+" not in candidate:
            return candidate


def new_message_id() -> str:
    return new_connection_id()


@dataclass(frozen=True)
class WsApiContext:
    api_id: str
    stage: str
    domain_name: str


@dataclass(frozen=True)
class WsClient:
    connection_id: str
    connected_at_ms: int
    source_ip: str
    user_agent: str | None


def _canonical(name: str) -> str:
    words = [part.capitalize() for part in name.split("-")]
    return "-".join("WebSocket" if w == "Websocket" else w for w in words)


def _request_context(
    api: WsApiContext, client: WsClient, route_key: str, event_type: str, *, user_agent: bool
) -> dict[str, Any]:
    now = datetime.now(UTC)
    identity: dict[str, Any] = {"sourceIp": client.source_ip}
    if user_agent and client.user_agent is not None:
        identity["userAgent"] = client.user_agent
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": str(uuid.uuid4()),
        "requestTime": clf_time(now),
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": client.connected_at_ms,
        "requestTimeEpoch": int(time.time() * 1000),
        "identity": identity,
        "requestId": str(uuid.uuid4()),
        "domainName": api.domain_name,
        "connectionId": client.connection_id,
        "apiId": api.api_id,
    }


def connect_event(
    api: WsApiContext,
    client: WsClient,
    headers: Sequence[tuple[str, str]],
    query: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        multi_headers.setdefault(_canonical(name), []).append(value)
    port = api.domain_name.rsplit(":", 1)[-1] if ":" in api.domain_name else "80"
    for name, value in (
        ("X-Forwarded-For", client.source_ip),
        ("X-Forwarded-Port", port),
        ("X-Forwarded-Proto", "http"),
    ):
        multi_headers.setdefault(name, [value])
    event: dict[str, Any] = {
        "headers": {name: values[-1] for name, values in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "requestContext": _request_context(api, client, "$connect", "CONNECT", user_agent=True),
        "isBase64Encoded": False,
    }
    if query:  # only when the URL had a query string, as on AWS
        multi: dict[str, list[str]] = {}
        for key, value in query:
            multi.setdefault(key, []).append(value)
        event["queryStringParameters"] = {k: v[-1] for k, v in multi.items()}
        event["multiValueQueryStringParameters"] = multi
    return event


def message_event(
    api: WsApiContext, client: WsClient, route_key: str, data: str | bytes
) -> dict[str, Any]:
    context = _request_context(api, client, route_key, "MESSAGE", user_agent=True)
    context["messageId"] = new_message_id()
    if isinstance(data, bytes):
        body, encoded = base64.b64encode(data).decode("ascii"), True
    else:
        body, encoded = data, False
    return {"requestContext": context, "body": body, "isBase64Encoded": encoded}


def disconnect_event(
    api: WsApiContext, client: WsClient, status_code: int, reason: str
) -> dict[str, Any]:
    headers = {"Host": api.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    context = _request_context(api, client, "$disconnect", "DISCONNECT", user_agent=True)
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }


_LIFECYCLE = frozenset({"$connect", "$disconnect"})


def select_route(expression: str, data: str | bytes, routes: Sequence[str]) -> str | None:
    """The route key for a message: the expression's value if it names a route, else
    $default; None when neither exists (API Gateway then answers "Forbidden")."""
    expression = expression.strip()
    if expression.startswith("${") and expression.endswith("}"):
        expression = "$" + expression[2:-1]
    key: Any = None
    if expression.startswith("$request.body.") and isinstance(data, str):
        try:
            key = json.loads(data)
        except (ValueError, RecursionError):  # not JSON, or nested thousands deep
            key = None
        for part in expression.removeprefix("$request.body.").split("."):
            key = key.get(part) if isinstance(key, dict) else None
    # API Gateway never routes a message to $connect or $disconnect: those run only when
    # a connection opens or ends, whatever a message says.
    if isinstance(key, str | int | float | bool) and str(key) in set(routes) - _LIFECYCLE:
        return str(key)
    return "$default" if "$default" in routes else None
