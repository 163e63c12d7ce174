"""The local REST API: HTTP request -> REST v1 proxy event -> function -> HTTP response.

Behaves like API Gateway where it shows: an unknown route or method is 403
{"message":"Missing Authentication Token"}; a function that raises, times out or
returns a malformed proxy result is 502 {"message": "Internal server error"} (the
traceback is in the runtime's log, as it would be in CloudWatch); a function still
running at the integration timeout (29 s) is 504 {"message": "Endpoint request timed
out"}, and runs on to its own Timeout; a body over 10 MB is 413, refused while it is
read (never held whole); a client that stops sending its body gets 408; a proxy result
without a Content-Type is sent as application/json; a WebSocket handshake is 400.

One path is the runtime's own: GET METRICS_PATH answers the metrics the functions
printed as CloudWatch EMF, as Prometheus text (emf_metrics.py). `@` is not a character
API Gateway allows in a resource path, so no route of a template is that path; a greedy
`{proxy+}` route would match it, and the runtime answers first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from local_runtime.asgi import Receive, Scope, Send
from local_runtime.functions import INTEGRATION_TIMEOUT, LambdaFunction
from local_runtime.request_bodies import BodyTooLarge, BodyTooSlow, ClientGone, read_body
from local_runtime.rest_events import (
    INTEGRATION_TIMEOUT_SECONDS,
    ApiContext,
    HttpRequest,
    HttpResponse,
    json_error,
    proxy_response,
    rest_event,
)
from local_runtime.routes import RouteMatch, RouteTable

log = logging.getLogger(__name__)

METRICS_PATH = "/@local/metrics"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit for REST APIs (10 MB)
BODY_IDLE_TIMEOUT = 10.0  # seconds without a byte of the body before giving up (408)
# Events with bodies up to this size are built on the event loop: a thread hand-off
# costs more than building them, and every API request paid it.
INLINE_EVENT_BODY_BYTES = 64 * 1024


class HttpGateway:
    """An ASGI app serving every REST API route of the template on one port."""

    def __init__(
        self,
        routes: RouteTable,
        functions: Mapping[str, LambdaFunction],
        apis: Mapping[str, ApiContext],
        metrics_text: Callable[[], str] | None = None,
    ) -> None:
        self.routes = routes
        self.functions = functions
        self.apis = apis
        self.metrics_text = metrics_text

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            await _refuse_upgrade(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == METRICS_PATH and self.metrics_text is not None:
            await self._serve_metrics(scope, send)
            return
        try:
            body = await read_body(
                scope, receive, limit=MAX_BODY_BYTES, idle_timeout=BODY_IDLE_TIMEOUT
            )
        except BodyTooLarge:
            response = json_error(413, f"Request body larger than {MAX_BODY_BYTES} bytes")
            response.headers.append(("connection", "close"))  # the rest is never read
        except BodyTooSlow:
            response = json_error(408, "Request Timeout")
            response.headers.append(("connection", "close"))
        except ClientGone:
            return
        else:
            request = HttpRequest(
                method=scope["method"],
                path=scope["path"],
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
                query=_query_pairs(scope.get("query_string", b"")),
                body=body,
                source_ip=(scope.get("client") or ("127.0.0.1", 0))[0],
            )
            response = await self.handle(request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    async def _serve_metrics(self, scope: Scope, send: Send) -> None:
        assert self.metrics_text is not None
        if scope["method"] in ("GET", "HEAD"):
            status, content_type, body = 200, PROMETHEUS_TEXT, self.metrics_text().encode()
        else:
            status, content_type = 405, "application/json"
            body = json.dumps({"message": f"{METRICS_PATH} answers GET only"}).encode()
        headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")]
        if status == 405:
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""}
        )

    async def handle(self, request: HttpRequest) -> HttpResponse:
        match = self.routes.match(request.method, request.path)
        if match is None:
            match, request = self._match_with_stage_prefix(request)
        if match is None:
            return json_error(
                403, "Missing Authentication Token", "MissingAuthenticationTokenException"
            )
        function = self.functions[match.route.function]
        api = self.apis[match.route.rest_api]
        if len(request.body) <= INLINE_EVENT_BODY_BYTES:
            event = rest_event(request, match, api)
        else:  # off the loop: a body of megabytes is decoded (or base64-encoded) here
            event = await asyncio.to_thread(rest_event, request, match, api)
        result = await function.invoke_async(event, give_up_after=INTEGRATION_TIMEOUT_SECONDS)
        if result.outcome == INTEGRATION_TIMEOUT:
            return json_error(504, "Endpoint request timed out")
        if not result.succeeded:
            return json_error(502, "Internal server error")
        response = proxy_response(result.value)
        if response.status == 502 and not isinstance(result.value, dict):
            log.warning("%s returned %r, not a proxy response", function.name, result.value)
        request_id = event["requestContext"]["requestId"]
        response.headers.append(("x-amzn-RequestId", request_id))
        return response

    def _match_with_stage_prefix(
        self, request: HttpRequest
    ) -> tuple[RouteMatch | None, HttpRequest]:
        """Local URLs have no stage, but `/{stage}/path` (the shape of the AWS URL) is
        accepted too, when `/path` is a route of the API with that stage."""
        for logical_id, api in self.apis.items():
            prefix = f"/{api.stage}"
            if request.path == prefix or request.path.startswith(prefix + "/"):
                stripped = replace(request, path=request.path[len(prefix) :] or "/")
                match = self.routes.match(stripped.method, stripped.path)
                if match is not None and match.route.rest_api == logical_id:
                    return match, stripped
        return None, request


def _query_pairs(raw: bytes) -> list[tuple[str, str]]:
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True)


async def _refuse_upgrade(receive: Receive, send: Send) -> None:
    """A WebSocket handshake sent to the HTTP API: a clear 400, not a server error."""
    if (await receive())["type"] != "websocket.connect":
        return
    body = json.dumps(
        {"message": "This is the HTTP API; WebSocket clients connect to the WebSocket API"}
    ).encode()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 400,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message: Any = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
