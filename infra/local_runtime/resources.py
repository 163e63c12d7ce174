"""What each template resource means on this machine.

A queue's Ref is the URL of a real queue on the chosen SQS server, its Arn and
QueueName the real ones; a WebSocket or REST API's Ref is a stable local api id; a
function's Ref is its name and its Arn a well-formed Lambda ARN. The planner fills
these values in as resources come up (queues need the SQS server) and then produces
the resolved specs the runtime runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local_runtime.function_events import IMPLICIT_REST_API, parse_events
from local_runtime.intrinsics import IntrinsicError, ResourceValues
from local_runtime.specs import (
    FunctionSpec,
    LayerSpec,
    QueueSpec,
    RestApiSpec,
    WebSocketApiSpec,
)
from local_runtime.template import Resource, SamTemplate, TemplateError

log = logging.getLogger(__name__)

_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "RedrivePolicy",
    "RedriveAllowPolicy",
)
_FUNCTION_ARN_IN_URI = re.compile(r"(arn:[^:]+:lambda:[^:]+:[^:]+:function:[^/:]+)")

CreateQueue = Callable[[str, dict[str, str]], tuple[str, str]]


def local_api_id(stack_name: str, logical_id: str) -> str:
    """A stable, API-Gateway-shaped id (10 lower-case characters) for a local API."""
    return hashlib.sha256(f"{stack_name}/{logical_id}".encode()).hexdigest()[:10]


def _as_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


class TemplatePlanner:
    def __init__(
        self, template: SamTemplate, *, region: str, account_id: str, stack_name: str
    ) -> None:
        self.template = template
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        self.pseudo: dict[str, Any] = {
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::StackName": stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/local"
            ),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        self.values = ResourceValues(fallback=self._fallback)
        self.resolver = template.make_resolver(self.pseudo, self.values)
        self.resources = template.active_resources(self.resolver)
        self._by_type: dict[str, list[Resource]] = {}
        for resource in self.resources:
            self._by_type.setdefault(resource.type, []).append(resource)
        self._warned: set[str] = set()
        self._register_static_values()

    def of_type(self, kind: str) -> list[Resource]:
        return self._by_type.get(kind, [])

    # -- values known without any server ---------------------------------------------

    def _register_static_values(self) -> None:
        prefix = f"arn:aws:lambda:{self.region}:{self.account_id}"
        for layer in self.of_type("AWS::Serverless::LayerVersion"):
            name = layer.properties.get("LayerName") or layer.logical_id
            self.values.set(layer.logical_id, f"{prefix}:layer:{name}:1")
        for function in self.of_type("AWS::Serverless::Function"):
            name = self.resolver.resolve(function.properties.get("FunctionName")) or (
                f"{self.stack_name}-{function.logical_id}"
            )
            self.values.set(function.logical_id, name, Arn=f"{prefix}:function:{name}")
        rest_ids = [IMPLICIT_REST_API] + [
            r.logical_id for r in self.of_type("AWS::Serverless::Api")
        ]
        for logical_id in rest_ids:
            api_id = local_api_id(self.stack_name, logical_id)
            self.values.set(logical_id, api_id, RootResourceId=f"{api_id}root")
        for api in self.of_type("AWS::ApiGatewayV2::Api"):
            api_id = local_api_id(self.stack_name, api.logical_id)
            endpoint = f"wss://{api_id}.execute-api.{self.region}.amazonaws.com"
            self.values.set(api.logical_id, api_id, ApiId=api_id, ApiEndpoint=endpoint)
        for integration in self.of_type("AWS::ApiGatewayV2::Integration"):
            self.values.set(integration.logical_id, integration.logical_id)
        for route in self.of_type("AWS::ApiGatewayV2::Route"):
            # A RouteResponse names its route by Ref or by GetAtt RouteId: the same id.
            self.values.set(route.logical_id, route.logical_id, RouteId=route.logical_id)
        for stage in self.of_type("AWS::ApiGatewayV2::Stage"):
            self.values.set(stage.logical_id, str(stage.properties.get("StageName", "$default")))

    def _fallback(self, logical_id: str, attribute: str | None) -> Any:
        kind = self.template.resource_type(logical_id)
        if kind is None:
            what = f"{logical_id}.{attribute}" if attribute else logical_id
            raise IntrinsicError(f"reference to {what!r}, which is not in the template")
        if kind == "AWS::SQS::Queue":
            raise IntrinsicError(f"queue {logical_id} is referenced before it exists")
        stand_in = f"{logical_id}.{attribute}" if attribute else logical_id
        if stand_in not in self._warned:
            self._warned.add(stand_in)
            log.warning("%s (%s) has no local value; using %r", stand_in, kind, stand_in)
        return stand_in

    # -- queues ------------------------------------------------------------------------

    def create_queues(self, create: CreateQueue) -> dict[str, QueueSpec]:
        """Create every queue through `create(name, attributes) -> (url, arn)`, each one
        after the queues it references (dead-letter queues first)."""
        queues = {q.logical_id: q for q in self.of_type("AWS::SQS::Queue")}
        done: dict[str, QueueSpec] = {}
        visiting: set[str] = set()

        def visit(logical_id: str) -> None:
            if logical_id in done:
                return
            if logical_id in visiting:
                raise TemplateError(f"queues reference each other in a cycle at {logical_id}")
            visiting.add(logical_id)
            resource = queues[logical_id]
            for dependency in _references(resource.properties) & queues.keys():
                visit(dependency)
            done[logical_id] = self._create_queue(resource, create)

        for logical_id in queues:
            visit(logical_id)
        return done

    def _create_queue(self, resource: Resource, create: CreateQueue) -> QueueSpec:
        properties = self.resolver.resolve(resource.properties)
        fifo = str(properties.get("FifoQueue", "false")).lower() == "true"
        name = properties.get("QueueName") or f"{self.stack_name}-{resource.logical_id}"
        if fifo and not name.endswith(".fifo"):
            name += ".fifo"
        attributes = {
            key: _as_string(properties[key]) for key in _QUEUE_ATTRIBUTES if key in properties
        }
        if not fifo:
            attributes.pop("FifoQueue", None)  # SQS rejects FifoQueue=false on create
        url, arn = create(name, attributes)
        self.values.set(resource.logical_id, url, Arn=arn, QueueName=name, QueueUrl=url)
        return QueueSpec(resource.logical_id, name, url, arn, attributes)

    # -- functions and APIs ---------------------------------------------------------------

    def layers(self) -> dict[str, LayerSpec]:
        layers = {}
        for layer in self.of_type("AWS::Serverless::LayerVersion"):
            uri = self.resolver.resolve(layer.properties.get("ContentUri"))
            if not isinstance(uri, str):
                raise TemplateError(f"layer {layer.logical_id}: ContentUri must be a local folder")
            layers[layer.logical_id] = LayerSpec(layer.logical_id, self._path(uri))
        return layers

    def functions(self) -> dict[str, FunctionSpec]:
        layers = self.layers()
        layer_by_arn = {str(self.values.refs[logical]): logical for logical in layers}
        functions = {}
        for resource in self.of_type("AWS::Serverless::Function"):
            functions[resource.logical_id] = self._function(resource, layers, layer_by_arn)
        return functions

    def _function(
        self, resource: Resource, layers: dict[str, LayerSpec], layer_by_arn: dict[str, str]
    ) -> FunctionSpec:
        p = self.resolver.resolve(resource.properties)
        where = f"function {resource.logical_id}"
        code_uri, handler = p.get("CodeUri"), p.get("Handler")
        if not isinstance(code_uri, str) or not isinstance(handler, str):
            raise TemplateError(f"{where}: needs a local CodeUri folder and a Handler")
        function_layers = []
        for ref in p.get("Layers") or []:
            logical = layer_by_arn.get(ref)
            if logical is None:
                raise TemplateError(f"{where}: layer {ref!r} is not a layer of this template")
            function_layers.append(layers[logical])
        env = (p.get("Environment") or {}).get("Variables") or {}
        rest_by_id = {str(self.values.refs[r]): r for r in self._rest_api_ids()}
        api, sqs, schedules = parse_events(
            resource.logical_id, p.get("Events") or {}, rest_by_id, self.stack_name
        )
        return FunctionSpec(
            logical_id=resource.logical_id,
            function_name=str(self.values.refs[resource.logical_id]),
            arn=str(self.values.attributes[(resource.logical_id, "Arn")]),
            code_dir=self._path(code_uri),
            handler=handler,
            runtime=str(p.get("Runtime", "python3.11")),
            timeout=float(p.get("Timeout", 3)),
            memory_mb=int(p.get("MemorySize", 128)),
            reserved_concurrency=_reserved(p.get("ReservedConcurrentExecutions"), where),
            environment={str(k): _as_string(v) for k, v in env.items()},
            layers=tuple(function_layers),
            api_events=tuple(api),
            sqs_events=tuple(sqs),
            schedule_events=tuple(schedules),
        )

    def _rest_api_ids(self) -> list[str]:
        return [IMPLICIT_REST_API] + [r.logical_id for r in self.of_type("AWS::Serverless::Api")]

    def rest_apis(self) -> list[RestApiSpec]:
        apis = [RestApiSpec(IMPLICIT_REST_API, str(self.values.refs[IMPLICIT_REST_API]), "Prod")]
        for resource in self.of_type("AWS::Serverless::Api"):
            p = self.resolver.resolve(resource.properties)
            apis.append(
                RestApiSpec(
                    resource.logical_id,
                    str(self.values.refs[resource.logical_id]),
                    str(p.get("StageName", "Prod")),
                    tuple(p.get("BinaryMediaTypes") or ()),
                )
            )
        return apis

    def websocket_apis(self, functions: dict[str, FunctionSpec]) -> list[WebSocketApiSpec]:
        function_by_arn = {spec.arn: logical for logical, spec in functions.items()}
        integrations: dict[str, str] = {}
        for integration in self.of_type("AWS::ApiGatewayV2::Integration"):
            uri = str(self.resolver.resolve(integration.properties.get("IntegrationUri", "")))
            match = _FUNCTION_ARN_IN_URI.search(uri)
            if match and match.group(1) in function_by_arn:
                integrations[integration.logical_id] = function_by_arn[match.group(1)]
        apis = []
        for api in self.of_type("AWS::ApiGatewayV2::Api"):
            p = self.resolver.resolve(api.properties)
            if str(p.get("ProtocolType", "")).upper() != "WEBSOCKET":
                log.warning(
                    "API %s: only WebSocket APIs of ApiGatewayV2 run locally", api.logical_id
                )
                continue
            api_id = str(self.values.refs[api.logical_id])
            routes: dict[str, str] = {}
            two_way: set[str] = set()
            answered = self._routes_with_a_response(api_id)
            for route in self.of_type("AWS::ApiGatewayV2::Route"):
                r = self.resolver.resolve(route.properties)
                if r.get("ApiId") != api_id:
                    continue
                if _is_two_way(route.logical_id, r, route.logical_id in answered):
                    two_way.add(str(r["RouteKey"]))
                target = str(r.get("Target", "")).removeprefix("integrations/")
                if target not in integrations:
                    raise TemplateError(
                        f"route {route.logical_id} ({r.get('RouteKey')}): its Target "
                        f"{r.get('Target')!r} is not a Lambda integration of this template"
                    )
                routes[str(r["RouteKey"])] = integrations[target]
            stages = [
                str(self.resolver.resolve(s.properties).get("StageName"))
                for s in self.of_type("AWS::ApiGatewayV2::Stage")
                if self.resolver.resolve(s.properties).get("ApiId") == api_id
            ]
            apis.append(
                WebSocketApiSpec(
                    api.logical_id,
                    api_id,
                    stages[0] if stages else "local",
                    str(p.get("RouteSelectionExpression", "$request.body.action")),
                    routes,
                    frozenset(two_way),
                )
            )
        return apis

    def _routes_with_a_response(self, api_id: str) -> set[str]:
        """Logical ids of the routes of `api_id` that have a RouteResponse."""
        found = set()
        for response in self.of_type("AWS::ApiGatewayV2::RouteResponse"):
            r = self.resolver.resolve(response.properties)
            if r.get("ApiId") == api_id:
                found.add(str(r.get("RouteId")))
        return found

    def _path(self, relative: str) -> Path:
        path = (self.template.base_dir / relative).resolve()
        if not path.is_dir():
            raise TemplateError(f"{relative!r} (from {self.template.path.name}) is not a folder")
        return path


def _is_two_way(logical_id: str, route: dict[str, Any], has_response: bool) -> bool:
    """API Gateway sends an integration's answer back only when the route has both a
    RouteResponse and a RouteResponseSelectionExpression; one without the other is
    most likely a mistake, so say which half is missing."""
    has_expression = bool(route.get("RouteResponseSelectionExpression"))
    if has_expression != has_response:
        missing = "RouteResponse" if has_expression else "RouteResponseSelectionExpression"
        log.warning(
            "route %s (%s) has no %s: it is one-way, its function's answers are not sent back",
            logical_id,
            route.get("RouteKey"),
            missing,
        )
    return has_expression and has_response


def _references(value: Any) -> set[str]:
    """Logical ids a raw (unresolved) value refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _references(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item[0] if isinstance(item, list) else str(item).split(".")[0])
            elif key == "Fn::Sub":
                text = item[0] if isinstance(item, list) else item
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]*)\}", str(text))}
            found |= _references(item)
    return found


def _reserved(value: Any, where: str) -> int | None:
    if value is None:
        return None
    try:
        reserved = int(value)
    except (TypeError, ValueError):
        reserved = -1
    if reserved < 1:
        # 0 throttles every invocation on AWS: a function that can never run locally.
        raise TemplateError(
            f"{where}: ReservedConcurrentExecutions must be a whole number >= 1, not {value!r}"
        )
    return reserved
