"""API Gateway REST (v1) Lambda proxy events and responses.

Chalice reads the v1 shape only (multiValueQueryStringParameters, requestContext.
resourcePath...), so this is what every Api event receives, whatever the handler.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatch
from typing import Any

from local_runtime.routes import RouteMatch

# API Gateway's REST integration timeout (the default, and the most AWS allows without a
# quota increase): the client gets 504 then, while the function runs on to its Timeout.
INTEGRATION_TIMEOUT_SECONDS = 29.0


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: Sequence[tuple[str, str]]  # as received, duplicates kept
    query: Sequence[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class ApiContext:
    api_id: str
    stage: str
    account_id: str
    domain_name: str
    binary_media_types: tuple[str, ...] = ()


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def clf_time(moment: datetime) -> str:
    """API Gateway's requestTime: '25/Nov/2026:12:35:24 +0000'."""
    return moment.strftime("%d/%b/%Y:%H:%M:%S +0000")


def _is_binary(content_type: str, body: bytes, binary_types: Sequence[str]) -> bool:
    main_type = content_type.split(";", 1)[0].strip()
    if main_type and any(fnmatch(main_type, pattern) for pattern in binary_types):
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True  # a JSON event cannot carry it as text
    return False


def _single_and_multi(
    pairs: Sequence[tuple[str, str]],
) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    if not pairs:
        return None, None
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        multi.setdefault(key, []).append(value)
    return {key: values[-1] for key, values in multi.items()}, multi


def rest_event(request: HttpRequest, match: RouteMatch, api: ApiContext) -> dict[str, Any]:
    now = datetime.now(UTC)
    request_id = str(uuid.uuid4())
    lower_headers = [(k.lower(), v) for k, v in request.headers]
    headers, multi_headers = _single_and_multi(lower_headers)
    query, multi_query = _single_and_multi(request.query)
    content_type = (headers or {}).get("content-type", "")
    binary = bool(request.body) and _is_binary(content_type, request.body, api.binary_media_types)
    if not request.body:
        body: str | None = None
    elif binary:
        body = base64.b64encode(request.body).decode("ascii")
    else:
        body = request.body.decode("utf-8")
    user_agent = (headers or {}).get("user-agent")
    return {
        "resource": match.route.path,
        "path": request.path,
        "httpMethod": request.method,
        "headers": headers or {},
        "multiValueHeaders": multi_headers or {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": match.path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": match.route.path,
            "resourcePath": match.route.path,
            "httpMethod": request.method,
            "extendedRequestId": request_id,
            "requestTime": clf_time(now),
            "path": f"/{api.stage}{request.path}",
            "accountId": api.account_id,
            "protocol": "HTTP/1.1",
            "stage": api.stage,
            "domainPrefix": api.api_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": request.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": user_agent,
                "user": None,
            },
            "domainName": api.domain_name,
            "apiId": api.api_id,
        },
        "body": body,
        "isBase64Encoded": binary,
    }


def json_error(status: int, message: str, error_type: str | None = None) -> HttpResponse:
    headers = [("content-type", "application/json")]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    return HttpResponse(status, headers, json.dumps({"message": message}).encode())


def proxy_response(value: Any) -> HttpResponse:
    """A Lambda proxy result -> HTTP; anything malformed is API Gateway's 502."""
    if not isinstance(value, dict) or "statusCode" not in value:
        return json_error(502, "Internal server error")
    try:
        status = int(value["statusCode"])
    except (TypeError, ValueError):
        return json_error(502, "Internal server error")
    merged: dict[str, list[str]] = {}
    for key, values in (value.get("multiValueHeaders") or {}).items():
        merged[key.lower()] = [str(v) for v in values]
    for key, single in (value.get("headers") or {}).items():
        merged.setdefault(key.lower(), [str(single)])
    body = value.get("body")
    if body is None:
        raw = b""
    elif value.get("isBase64Encoded"):
        raw = base64.b64decode(body)
    else:
        raw = body.encode() if isinstance(body, str) else str(body).encode()
    # API Gateway's default for a proxy result that names no content type.
    merged.setdefault("content-type", ["application/json"])
    headers = [(k, v) for k, values in merged.items() for v in values]
    return HttpResponse(status, headers, raw)
