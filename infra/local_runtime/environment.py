"""Each function's environment variables, as its own sandbox sees them.

Every function runs in processes of its own, so each gets exactly its own variables
(`function_environment`): two functions may give one variable different values, and a
function may override a Globals variable, as on AWS. Values that name the AWS endpoint
of a local API are rewritten to the local URL first, so that, e.g.,
`https://${WebSocketApi}.execute-api.${AWS::Region}.amazonaws.com/${Stage}` reaches the
local @connections API.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from local_runtime.specs import FunctionSpec


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


def lambda_variables(spec: FunctionSpec, region: str) -> dict[str, str]:
    """The variables Lambda itself sets in a function's execution environment."""
    version = spec.runtime.removeprefix("python")
    return {
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"$LATEST/{uuid.uuid4().hex}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{version}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "_HANDLER": spec.handler,
        "TZ": ":UTC",
    }


def function_environment(
    spec: FunctionSpec,
    *,
    host: Mapping[str, str],
    overrides: Mapping[str, str],
    region: str,
) -> dict[str, str]:
    """Exactly what one function's sandbox sees, later entries winning: the host's own
    variables (PATH, HOME... as the runtime was started), the function's variables
    (Globals merged with its own, endpoints localized), the caller's overrides (SQS
    endpoint, credentials, extra_env), and Lambda's variables. Never another function's."""
    return {**host, **spec.environment, **overrides, **lambda_variables(spec, region)}


def localize_environment(
    specs: Mapping[str, FunctionSpec], endpoints: Iterable[LocalEndpoint], region: str
) -> dict[str, FunctionSpec]:
    """Each function with its variables' AWS API endpoints rewritten to the local ones."""
    endpoints = list(endpoints)
    return {
        logical_id: replace(
            spec,
            environment={
                name: rewrite_endpoints(value, endpoints, region)
                for name, value in spec.environment.items()
            },
        )
        for logical_id, spec in specs.items()
    }


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
