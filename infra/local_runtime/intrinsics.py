"""CloudFormation intrinsic functions, evaluated against local values.

`Resolver.resolve` walks any template value and replaces Ref, Fn::GetAtt, Fn::Sub,
Fn::Join, Fn::If, Fn::Equals, Fn::Select, Fn::Split, Fn::Not/And/Or, Fn::FindInMap,
Fn::GetAZs, Fn::Base64 and Condition with plain values. What a Ref or GetAtt of a
resource means locally (a queue URL, a local API id...) is decided by the runtime and
handed in as `ResourceValues`, so this module knows no resource type.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class IntrinsicError(ValueError):
    """A template expression that cannot be evaluated; the message names the expression."""


class _NoValue:
    """AWS::NoValue: the property disappears from its parent."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


@dataclass
class ResourceValues:
    """What Ref and GetAtt return for each logical id, filled in as resources come up."""

    refs: dict[str, Any] = field(default_factory=dict)
    attributes: dict[tuple[str, str], Any] = field(default_factory=dict)
    # Called for a logical id that exists in the template but has no local value yet
    # (an ignored resource type): returns a stand-in, or raises.
    fallback: Callable[[str, str | None], Any] | None = None

    def set(self, logical_id: str, ref: Any, **attributes: Any) -> None:
        self.refs[logical_id] = ref
        for name, value in attributes.items():
            self.attributes[(logical_id, name)] = value


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    def __init__(
        self,
        *,
        parameters: Mapping[str, Any],
        pseudo: Mapping[str, Any],
        resources: ResourceValues,
        mappings: Mapping[str, Any] | None = None,
        conditions: Mapping[str, Any] | None = None,
    ) -> None:
        self.parameters = parameters
        self.pseudo = pseudo
        self.resources = resources
        self.mappings = mappings or {}
        self._condition_exprs = dict(conditions or {})
        self._condition_values: dict[str, bool] = {}

    # -- public ------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        resolved = self._resolve(value)
        return None if resolved is NO_VALUE else resolved

    def condition(self, name: str) -> bool:
        """The value of a named condition (evaluated once, on first use)."""
        if name not in self._condition_values:
            if name not in self._condition_exprs:
                raise IntrinsicError(f"unknown condition {name!r}")
            self._condition_values[name] = bool(self._resolve(self._condition_exprs[name]))
        return self._condition_values[name]

    # -- walking -----------------------------------------------------------------

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            handler = self._FUNCTIONS.get(key)
            if handler is not None:
                return handler(self, argument)
        result = {}
        for key, item in value.items():
            resolved = self._resolve(item)
            if resolved is not NO_VALUE:
                result[key] = resolved
        return result

    # -- functions ---------------------------------------------------------------

    def _ref(self, name: Any) -> Any:
        name = self._resolve(name)
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources.refs:
            return self.resources.refs[name]
        if self.resources.fallback is not None:
            return self.resources.fallback(name, None)
        raise IntrinsicError(f"Ref to unknown name {name!r}")

    def _get_att(self, argument: Any) -> Any:
        argument = self._resolve(argument)
        if isinstance(argument, str) and "." in argument:  # "Resource.Attribute" form
            argument = argument.split(".", 1)
        if not (isinstance(argument, list) and len(argument) == 2):
            raise IntrinsicError(f"Fn::GetAtt wants [Resource, Attribute], got {argument!r}")
        logical_id, attribute = argument
        key = (logical_id, attribute)
        if key in self.resources.attributes:
            return self.resources.attributes[key]
        if self.resources.fallback is not None:
            return self.resources.fallback(logical_id, attribute)
        raise IntrinsicError(f"Fn::GetAtt {logical_id}.{attribute}: no such resource attribute")

    def _sub(self, argument: Any) -> Any:
        if isinstance(argument, str):
            text, variables = argument, {}
        elif isinstance(argument, list) and len(argument) == 2:
            text, variables = argument[0], self._resolve(argument[1])
        else:
            raise IntrinsicError(f"Fn::Sub wants a string or [string, map], got {argument!r}")

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} is the escape for a literal ${Literal}
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name not in self.pseudo:
                resource, _, attribute = name.partition(".")
                return str(self._get_att([resource, attribute]))
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text)

    def _join(self, argument: Any) -> Any:
        argument = self._resolve(argument)
        if not (isinstance(argument, list) and len(argument) == 2):
            raise IntrinsicError(f"Fn::Join wants [delimiter, [values]], got {argument!r}")
        delimiter, values = argument
        return str(delimiter).join(str(item) for item in values)

    def _select(self, argument: Any) -> Any:
        index, values = self._resolve(argument)
        try:
            return values[int(index)]
        except (IndexError, ValueError, TypeError) as error:
            raise IntrinsicError(f"Fn::Select {index!r} of {values!r}: {error}") from error

    def _split(self, argument: Any) -> Any:
        delimiter, text = self._resolve(argument)
        return str(text).split(str(delimiter))

    def _if(self, argument: Any) -> Any:
        if not (isinstance(argument, list) and len(argument) == 3):
            raise IntrinsicError(f"Fn::If wants [condition, then, else], got {argument!r}")
        name, when_true, when_false = argument
        return self._resolve(when_true if self.condition(name) else when_false)

    def _equals(self, argument: Any) -> bool:
        left, right = self._resolve(argument)
        return str(left) == str(right)

    def _not(self, argument: Any) -> bool:
        (value,) = self._resolve(argument)
        return not value

    def _and(self, argument: Any) -> bool:
        return all(self._resolve(argument))

    def _or(self, argument: Any) -> bool:
        return any(self._resolve(argument))

    def _condition_ref(self, argument: Any) -> bool:
        return self.condition(argument)

    def _find_in_map(self, argument: Any) -> Any:
        map_name, top, second = self._resolve(argument)[:3]
        try:
            return self.mappings[map_name][top][second]
        except KeyError as error:
            raise IntrinsicError(f"Fn::FindInMap {map_name}/{top}/{second}: no such key") from error

    def _get_azs(self, argument: Any) -> list[str]:
        region = self._resolve(argument) or self.pseudo.get("AWS::Region", "us-east-1")
        return [f"{region}{zone}" for zone in "abc"]

    def _base64(self, argument: Any) -> str:
        return base64.b64encode(str(self._resolve(argument)).encode()).decode()

    def _import_value(self, argument: Any) -> Any:
        raise IntrinsicError(
            f"Fn::ImportValue {self._resolve(argument)!r}: other stacks do not exist locally; "
            "pass the value as a parameter instead"
        )

    _FUNCTIONS: dict[str, Callable[[Resolver, Any], Any]] = {
        "Ref": _ref,
        "Fn::GetAtt": _get_att,
        "Fn::Sub": _sub,
        "Fn::Join": _join,
        "Fn::Select": _select,
        "Fn::Split": _split,
        "Fn::If": _if,
        "Fn::Equals": _equals,
        "Fn::Not": _not,
        "Fn::And": _and,
        "Fn::Or": _or,
        "Condition": _condition_ref,
        "Fn::FindInMap": _find_in_map,
        "Fn::GetAZs": _get_azs,
        "Fn::Base64": _base64,
        "Fn::ImportValue": _import_value,
    }
