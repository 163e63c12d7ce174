"""Building the HTTP gateway (all REST APIs) and one WebSocket gateway per WebSocket API."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from local_runtime.functions import LambdaFunction
from local_runtime.http_gateway import HttpGateway
from local_runtime.rest_events import ApiContext
from local_runtime.routes import Route, RouteTable
from local_runtime.specs import FunctionSpec, RestApiSpec, WebSocketApiSpec
from local_runtime.websocket_gateway import WebSocketGateway

log = logging.getLogger(__name__)


def build_gateways(
    rest_apis: Sequence[RestApiSpec],
    websocket_apis: Sequence[WebSocketApiSpec],
    specs: Mapping[str, FunctionSpec],
    functions: Mapping[str, LambdaFunction],
    *,
    account_id: str,
    host: str,
    http_port: int,
    ws_ports: Mapping[str, int],
    idle_timeout: float,
    metrics_text: Callable[[], str] | None = None,
) -> tuple[HttpGateway | None, list[WebSocketGateway]]:
    routes: list[Route] = []
    seen: dict[tuple[str, str], str] = {}
    for logical_id, spec in specs.items():
        for event in spec.api_events:
            key = (event.method, event.path)
            if key in seen:
                log.warning(
                    "%s %s is served by both %s and %s; %s wins",
                    event.method,
                    event.path,
                    seen[key],
                    logical_id,
                    seen[key],
                )
                continue
            seen[key] = logical_id
            routes.append(Route(event.path, event.method, logical_id, event.rest_api))
    http_gateway = None
    if routes:
        contexts = {
            api.logical_id: ApiContext(
                api.api_id, api.stage, account_id, f"{host}:{http_port}", api.binary_media_types
            )
            for api in rest_apis
        }
        http_gateway = HttpGateway(RouteTable(routes), functions, contexts, metrics_text)
    ws_gateways = [
        WebSocketGateway(
            api,
            functions,
            domain_name=f"{host}:{ws_ports[api.logical_id]}",
            idle_timeout=idle_timeout,
        )
        for api in websocket_apis
    ]
    return http_gateway, ws_gateways
