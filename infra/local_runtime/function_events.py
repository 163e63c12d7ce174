"""A function's Events (resolved) -> the specs of its routes, pollers and schedules.

Defaults are Lambda's and SAM's: BatchSize 10, no batching window, ReportBatchItemFailures
only when listed in FunctionResponseTypes; MaximumConcurrency, which AWS leaves to its own
scaling when unset, defaults to 5 here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from local_runtime.specs import ApiEventSpec, ScheduleEventSpec, SqsEventSpec

log = logging.getLogger(__name__)

IMPLICIT_REST_API = "ServerlessRestApi"


def parse_events(
    function_id: str, events: dict[str, Any], rest_api_by_id: dict[str, str], stack_name: str
) -> tuple[list[ApiEventSpec], list[SqsEventSpec], list[ScheduleEventSpec]]:
    """A function's resolved Events: Api, SQS and Schedule/ScheduleV2; others are
    reported and skipped."""
    api: list[ApiEventSpec] = []
    sqs: list[SqsEventSpec] = []
    schedules: list[ScheduleEventSpec] = []
    for name, event in events.items():
        kind, props = event.get("Type"), event.get("Properties") or {}
        if kind == "Api":
            rest = props.get("RestApiId")
            api.append(
                ApiEventSpec(
                    name,
                    str(props["Path"]),
                    str(props["Method"]).upper(),
                    rest_api_by_id.get(rest, IMPLICIT_REST_API) if rest else IMPLICIT_REST_API,
                )
            )
        elif kind == "SQS":
            window = float(props.get("MaximumBatchingWindowInSeconds", 0))
            scaling = props.get("ScalingConfig") or {}
            sqs.append(
                SqsEventSpec(
                    name=name,
                    queue_arn=str(props["Queue"]),
                    batch_size=int(props.get("BatchSize", 10)),
                    batching_window=window,
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (props.get("FunctionResponseTypes") or []),
                    maximum_concurrency=int(scaling.get("MaximumConcurrency", 5)),
                    enabled=_truthy(props.get("Enabled", True)),
                )
            )
        elif kind in ("Schedule", "ScheduleV2"):
            expression = props.get("Schedule") or props.get("ScheduleExpression")
            enabled = (
                _truthy(props.get("Enabled", True))
                and str(props.get("State", "ENABLED")).upper() == "ENABLED"
            )
            raw_input = props.get("Input")
            schedules.append(
                ScheduleEventSpec(
                    name,
                    str(expression),
                    enabled,
                    json.loads(raw_input) if isinstance(raw_input, str) else raw_input,
                    str(props.get("Name") or f"{stack_name}-{function_id}{name}"),
                )
            )
        else:
            log.warning(
                "function %s: event %s of type %s is not run locally", function_id, name, kind
            )
    return api, sqs, schedules


def _truthy(value: Any) -> bool:
    return str(value).lower() not in ("false", "0", "no", "disabled")
