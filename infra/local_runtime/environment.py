"""Function environment variables in a runtime where all functions share one process.

`os.environ` is process-wide, so the runtime applies the union of every function's
Environment.Variables at start and refuses to start if two functions give one variable
different values (one of them would silently see the other's value). Values that name
the AWS endpoint of a local API are rewritten to the local URL first, so that, e.g.,
`https://${WebSocketApi}.execute-api.${AWS::Region}.amazonaws.com/${Stage}` reaches the
local @connections API.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from local_runtime.specs import FunctionSpec


class EnvironmentConflict(ValueError):
    """Two functions set one variable to different values."""


@dataclass(frozen=True)
class LocalEndpoint:
    api_id: str
    https_url: str  # what https://{api_id}.execute-api.../{stage} becomes
    wss_url: str | None = None  # what wss://... becomes (WebSocket APIs only)
    keeps_stage: bool = True  # WebSocket: the stage stays in the path; REST: it goes

    @classmethod
    def websocket(cls, api_id: str, host: str, port: int) -> LocalEndpoint:
        return cls(api_id, f"http://{host}:{port}", f"ws://{host}:{port}")

    @classmethod
    def rest(cls, api_id: str, http_url: str) -> LocalEndpoint:
        return cls(api_id, http_url, None, keeps_stage=False)


def rewrite_endpoints(value: str, endpoints: Iterable[LocalEndpoint], region: str) -> str:
    for endpoint in endpoints:
        host = re.escape(f"{endpoint.api_id}.execute-api.{region}.amazonaws.com")
        pattern = re.compile(rf"(https|wss)://{host}(/[^/\s?#]*)?")

        def replace(match: re.Match[str], endpoint: LocalEndpoint = endpoint) -> str:
            base = endpoint.wss_url if match.group(1) == "wss" else endpoint.https_url
            if base is None:
                return match.group(0)
            return base + (match.group(2) or "") if endpoint.keeps_stage else base

        value = pattern.sub(replace, value)
    return value


def merge_environments(
    per_function: Mapping[str, Mapping[str, str]],
    *,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The union of the functions' variables; `overrides` (the caller's extra env) win
    and are never a conflict. Raises EnvironmentConflict naming both functions."""
    overrides = dict(overrides or {})
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    problems = []
    for function, variables in per_function.items():
        for name, value in variables.items():
            if name in overrides:
                continue
            if name in merged and merged[name] != value:
                problems.append(
                    f"{name}: {owner[name]} sets {merged[name]!r} but {function} sets {value!r}"
                )
                continue
            merged.setdefault(name, value)
            owner.setdefault(name, function)
    if problems:
        raise EnvironmentConflict(
            "functions share one process locally, so they must agree on environment "
            "variables:\n  " + "\n  ".join(problems)
        )
    merged.update(overrides)
    return merged


def localize_environment(
    specs: Mapping[str, FunctionSpec],
    endpoints: Iterable[LocalEndpoint],
    region: str,
    *,
    overrides: Mapping[str, str],
) -> tuple[dict[str, FunctionSpec], dict[str, str]]:
    """Each function's variables with local endpoints, and the process-wide union."""
    endpoints = list(endpoints)
    localized = {
        logical_id: replace(
            spec,
            environment={
                name: rewrite_endpoints(value, endpoints, region)
                for name, value in spec.environment.items()
            },
        )
        for logical_id, spec in specs.items()
    }
    union = merge_environments(
        {logical_id: spec.environment for logical_id, spec in localized.items()},
        overrides=overrides,
    )
    return localized, union


class AppliedEnvironment:
    """Applies variables to os.environ and puts the previous values back on restore()."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self.variables = dict(variables)
        self._previous: dict[str, str | None] = {}

    def apply(self) -> None:
        for name, value in self.variables.items():
            self._previous.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def restore(self) -> None:
        for name, previous in self._previous.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
        self._previous.clear()
