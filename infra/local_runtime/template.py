"""A SAM template as the runtime sees it: parameters, conditions, globals and resources.

This module does the CloudFormation/SAM bookkeeping (parameter defaults and overrides,
conditions, Globals.Function merging, resources switched off by a condition, resource
types nobody here understands) and hands out a `Resolver` for the values. What each
resource *means* locally is in `resources.py`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_runtime.cfn_yaml import load_template_file
from local_runtime.intrinsics import Resolver, ResourceValues

log = logging.getLogger(__name__)

# Types the runtime runs, or knowingly ignores because they mean nothing locally.
SUPPORTED_TYPES = frozenset(
    {
        "AWS::Serverless::Function",
        "AWS::Serverless::LayerVersion",
        "AWS::Serverless::Api",
        "AWS::SQS::Queue",
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Route",
        "AWS::ApiGatewayV2::RouteResponse",
        "AWS::ApiGatewayV2::Integration",
        "AWS::ApiGatewayV2::Stage",
    }
)
IGNORED_TYPES = frozenset(
    {
        "AWS::Lambda::Permission",
        "AWS::ApiGatewayV2::Deployment",
        "AWS::ApiGatewayV2::IntegrationResponse",
        "AWS::SQS::QueuePolicy",
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
        "AWS::Logs::LogGroup",
    }
)


class TemplateError(ValueError):
    """The template cannot be run locally; the message says which part and why."""


@dataclass(frozen=True)
class Resource:
    logical_id: str
    type: str
    properties: dict[str, Any]


class SamTemplate:
    """A loaded template with its parameters settled and its conditions applied."""

    def __init__(self, path: Path, parameter_overrides: Mapping[str, str] | None = None) -> None:
        self.path = path.resolve()
        self.base_dir = self.path.parent
        self.document = load_template_file(self.path)
        self.parameters = self._settle_parameters(dict(parameter_overrides or {}))
        self.mappings: dict[str, Any] = self.document.get("Mappings") or {}
        self.conditions: dict[str, Any] = self.document.get("Conditions") or {}
        self.globals_function: dict[str, Any] = (self.document.get("Globals") or {}).get(
            "Function"
        ) or {}
        raw = self.document.get("Resources")
        if not isinstance(raw, dict) or not raw:
            raise TemplateError(f"{self.path}: no Resources")
        self.raw_resources: dict[str, dict[str, Any]] = raw

    # -- parameters ----------------------------------------------------------------

    def _settle_parameters(self, overrides: dict[str, str]) -> dict[str, Any]:
        declared: dict[str, Any] = self.document.get("Parameters") or {}
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise TemplateError(f"parameter override for undeclared parameter(s): {unknown}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            spec = spec or {}
            if name in overrides:
                value: Any = overrides[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise TemplateError(f"parameter {name!r} has no Default: pass a value for it")
            kind = str(spec.get("Type", "String"))
            if kind == "CommaDelimitedList" or kind.startswith("List<"):
                value = [part.strip() for part in str(value).split(",")] if value != "" else []
            elif not isinstance(value, list):
                value = str(value)  # CloudFormation hands every scalar over as a string
            allowed = spec.get("AllowedValues")
            if allowed and value not in [str(a) for a in allowed]:
                raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
            values[name] = value
        return values

    # -- resolution ----------------------------------------------------------------

    def make_resolver(self, pseudo: Mapping[str, Any], resources: ResourceValues) -> Resolver:
        return Resolver(
            parameters=self.parameters,
            pseudo=pseudo,
            resources=resources,
            mappings=self.mappings,
            conditions=self.conditions,
        )

    def active_resources(self, resolver: Resolver) -> list[Resource]:
        """Resources whose Condition holds, Globals merged into functions, unknown types
        reported once (a warning each) and left out."""
        active: list[Resource] = []
        unknown: list[str] = []
        for logical_id, body in self.raw_resources.items():
            if not isinstance(body, dict) or "Type" not in body:
                raise TemplateError(f"resource {logical_id} has no Type")
            condition = body.get("Condition")
            if condition is not None and not resolver.condition(condition):
                continue
            kind = str(body["Type"])
            properties = copy.deepcopy(body.get("Properties") or {})
            if kind == "AWS::Serverless::Function":
                properties = merge_globals(self.globals_function, properties)
            if kind in SUPPORTED_TYPES:
                active.append(Resource(logical_id, kind, properties))
            elif kind not in IGNORED_TYPES:
                unknown.append(f"{logical_id} ({kind})")
        if unknown:
            log.warning(
                "ignoring resources of types the local runtime does not run: %s", ", ".join(unknown)
            )
        return active

    def resource_type(self, logical_id: str) -> str | None:
        body = self.raw_resources.get(logical_id)
        return str(body.get("Type")) if isinstance(body, dict) else None


def merge_globals(globals_: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals rule: maps merge (function wins), lists concatenate (globals first),
    scalars from the function replace the global ones."""
    merged: dict[str, Any] = copy.deepcopy(dict(globals_))
    for key, value in properties.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict) and not _is_intrinsic(value):
            merged[key] = merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + list(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _is_intrinsic(value: Mapping[str, Any]) -> bool:
    return len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref"))
