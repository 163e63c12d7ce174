"""Conditions and Fn::If for tests: the template as CloudFormation would deploy it for
given parameter values (deliberately independent of the local runtime's resolver)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NO_VALUE = {"Ref": "AWS::NoValue"}
_GONE = object()


def parameter_values(template: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, Any]:
    """Every parameter's value: `given`, else its Default (lists split as CloudFormation does)."""
    values: dict[str, Any] = {}
    for name, spec in template.get("Parameters", {}).items():
        raw = given.get(name, spec.get("Default"))
        assert raw is not None, f"parameter {name} has no Default: give it"
        if spec.get("Type") == "CommaDelimitedList":
            values[name] = [part for part in str(raw).split(",") if part] if raw != "" else []
        else:
            values[name] = str(raw)
    return values


def _value(node: Any, parameters: Mapping[str, Any], conditions: Mapping[str, bool]) -> Any:
    if isinstance(node, dict) and len(node) == 1:
        ((key, argument),) = node.items()
        if key == "Ref" and argument in parameters:
            return parameters[argument]
        if key == "Condition":
            return conditions[argument]
        if key == "Fn::Equals":
            left, right = (_value(a, parameters, conditions) for a in argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not _value(argument[0], parameters, conditions)
        if key == "Fn::And":
            return all(_value(a, parameters, conditions) for a in argument)
        if key == "Fn::Or":
            return any(_value(a, parameters, conditions) for a in argument)
        if key == "Fn::Join":
            delimiter, items = argument
            return delimiter.join(str(i) for i in _value(items, parameters, conditions))
    return node


def condition_values(template: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, bool]:
    values: dict[str, bool] = {}
    pending = dict(template.get("Conditions", {}))
    while pending:  # a condition may name another: settle those whose names are known
        for name, expression in list(pending.items()):
            try:
                values[name] = bool(_value(expression, parameters, values))
            except KeyError:
                continue
            del pending[name]
    return values


def choose(node: Any, conditions: Mapping[str, bool]) -> Any:
    """`node` with every Fn::If decided and every AWS::NoValue removed."""
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, then, otherwise = node["Fn::If"]
            return choose(then if conditions[name] else otherwise, conditions)
        if node == NO_VALUE:
            return _GONE
        chosen = {key: choose(value, conditions) for key, value in node.items()}
        return {key: value for key, value in chosen.items() if value is not _GONE}
    if isinstance(node, list):
        return [v for v in (choose(item, conditions) for item in node) if v is not _GONE]
    return node
