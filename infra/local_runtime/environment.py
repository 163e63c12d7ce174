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
from dataclasses import dataclass


class EnvironmentConflict(ValueError):
    """Two functions set one variable to different values."""


@dataclass(frozen=True)
class LocalEndpoint:
    api_id: str
    https_url: str  # what https://{api_id}.execute-api.../{stage} becomes
    wss_url: str | None = None  # what wss://... becomes (WebSocket APIs only)
    keeps_stage: bool = True  # WebSocket: the stage stays in the path; REST: it goes


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
