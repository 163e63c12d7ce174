"""template.yaml is what deploys: these specs check that it is valid, that it transforms,
and that its wiring matches the code it deploys (handlers, routes, queues, schedules).

No network, no Docker, no AWS credentials: cfn-lint and the SAM translator run offline.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from chalice import Chalice
from chalice.app import (
    CloudWatchEvent,
    EventSourceHandler,
    SQSEvent,
    WebsocketEventSourceHandler,
)

from order_engine.orders import Step
from order_engine.settings import Settings
from tests.support.cfn import load_template, ref_target
from tests.support.functions import load_function_module
from tests.support.sam import transform

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
FUNCTIONS = ROOT / "functions"


# --- reading the template ---------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """{logical id: Properties} of every resource of type `kind`."""
    return {
        name: resource.get("Properties", {})
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources(template, "AWS::Serverless::Function")


def function_setting(template: dict[str, Any], props: dict[str, Any], key: str) -> Any:
    """A function's own setting, else the Globals one (as SAM merges scalars)."""
    return props.get(key, template.get("Globals", {}).get("Function", {}).get(key))


def environment(template: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    """A function's environment variables: Globals merged with its own."""
    merged = dict(
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    merged.update(props.get("Environment", {}).get("Variables", {}))
    return merged


def events(props: dict[str, Any], kind: str) -> Iterator[dict[str, Any]]:
    for event in props.get("Events", {}).values():
        if event["Type"] == kind:
            yield event["Properties"]


def sqs_consumers(template: dict[str, Any]) -> dict[str, list[str]]:
    """{queue logical id: [functions it triggers]}."""
    consumers: dict[str, list[str]] = {}
    for name, props in functions(template).items():
        for event in events(props, "SQS"):
            queue = ref_target(event["Queue"])
            assert queue is not None, f"{name}: SQS event Queue must be !GetAtt <Queue>.Arn"
            consumers.setdefault(queue, []).append(name)
    return consumers


def dead_letter_queues(template: dict[str, Any]) -> set[str]:
    return {
        target
        for props in resources(template, "AWS::SQS::Queue").values()
        if (target := ref_target(props.get("RedrivePolicy", {}).get("deadLetterTargetArn")))
    }


def queue_variables(template: dict[str, Any]) -> dict[str, str]:
    """{VARIABLE_QUEUE_URL: queue logical id} over Globals and every function."""
    variables: dict[str, str] = {}
    for props in [{}, *functions(template).values()]:
        for name, value in environment(template, props).items():
            if name.endswith("_QUEUE_URL"):
                target = value.get("Ref") if isinstance(value, dict) else None
                assert isinstance(target, str), f"{name} must be !Ref <Queue>, not {value!r}"
                variables[name] = target
    return variables


def by_handler(template: dict[str, Any]) -> dict[str, str]:
    """{Handler string: function logical id}."""
    return {props["Handler"]: name for name, props in functions(template).items()}


# --- the handler modules, imported as Lambda imports them ----------------------------


@cache
def handler_module(name: str) -> ModuleType:
    """functions/<name>.py as its own module (loaded by file)."""
    path = FUNCTIONS / f"{name}.py"
    assert path.is_file(), f"no {path.relative_to(ROOT)}"
    return load_function_module(name, f"_template_test_functions_{name}")


def entry_point(handler: str) -> Any:
    module_name, _, attribute = handler.rpartition(".")
    module = handler_module(module_name)
    assert hasattr(module, attribute), f"functions/{module_name}.py has no {attribute!r}"
    return getattr(module, attribute)


# --- validity -------------------------------------------------------------------------


def test_template_passes_cfn_lint_without_errors_or_warnings() -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(TEMPLATE, config=ManualArgs(regions=["us-east-1"]))
    findings = [str(match) for match in matches if match.rule.id[0] in "EW"]
    assert findings == []


@pytest.fixture(scope="module")
def transformed(template: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation SAM would deploy, translated offline (no credentials)."""
    return transform(template, {"DatabaseUrl": "postgresql://orders:orders@db:5432/orders"})


def test_template_transforms_offline_into_partial_batch_event_source_mappings(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    mappings = resources(transformed, "AWS::Lambda::EventSourceMapping")
    consumers = sqs_consumers(template)
    wired = {
        (ref_target(m["FunctionName"]), ref_target(m["EventSourceArn"])) for m in mappings.values()
    }
    assert wired == {(f, queue) for queue, fs in consumers.items() for f in fs}
    for name, mapping in mappings.items():
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"], name
        assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MaximumConcurrency"}}


def test_template_transforms_offline_into_the_rest_api_and_the_sweeper_schedule(
    transformed: dict[str, Any],
) -> None:
    (rest_api,) = resources(transformed, "AWS::ApiGateway::RestApi").values()
    routes = {
        (path, method.upper())
        for path, operations in rest_api["Body"]["paths"].items()
        for method in operations
    }
    assert routes == chalice_routes()
    assert resources(transformed, "AWS::ApiGateway::Stage")

    rules = resources(transformed, "AWS::Events::Rule")
    targets = {
        ref_target(target["Arn"]): rule["ScheduleExpression"]
        for rule in rules.values()
        for target in rule["Targets"]
    }
    assert targets == {"SweeperFunction": "rate(1 minute)"}


# --- handlers and routes ------------------------------------------------------------


def test_every_function_handler_is_a_real_entry_point_in_functions(
    template: dict[str, Any],
) -> None:
    for name, props in functions(template).items():
        assert function_setting(template, props, "CodeUri") == "functions/", name
        handler = entry_point(props["Handler"])
        assert callable(handler), f"{name}: {props['Handler']} is not callable"
        module_name, _, attribute = props["Handler"].rpartition(".")
        app = handler_module(module_name).app
        if isinstance(handler, Chalice):
            assert handler.routes, f"{name}: {props['Handler']} is a Chalice app with no routes"
        else:
            # A decorated function is only a Lambda entry point as Chalice's handler.
            assert app.handler_map.get(attribute) is handler, name


def test_each_trigger_reaches_a_handler_of_its_kind(template: dict[str, Any]) -> None:
    for name, props in functions(template).items():
        handler = entry_point(props["Handler"])
        kinds = {event["Type"] for event in props.get("Events", {}).values()}
        if "Api" in kinds:
            assert isinstance(handler, Chalice), f"{name}: Api events need the Chalice app"
        if "SQS" in kinds:
            assert isinstance(handler, EventSourceHandler), name
            assert handler.event_class is SQSEvent, f"{name} is not an SQS handler"
        if "Schedule" in kinds:
            assert isinstance(handler, EventSourceHandler), name
            assert handler.event_class is CloudWatchEvent, f"{name} is not a scheduled handler"


def test_importing_the_handlers_needs_no_environment_variables() -> None:
    """Lambda (and any tool) imports a handler before the engine reads its settings."""
    modules = sorted(path.stem for path in FUNCTIONS.glob("*.py"))
    layer = ROOT / "layers" / "engine" / "python"
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)"
    result = subprocess.run(
        [sys.executable, "-c", script, *modules],
        env={"PATH": os.defpath, "PYTHONPATH": os.pathsep.join([str(FUNCTIONS), str(layer)])},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# The Chalice apps behind the HTTP API: the API itself, and the dashboard's page.
HTTP_APPS = ("api", "dashboard")


@cache
def app_routes(module_name: str) -> set[tuple[str, str]]:
    app = handler_module(module_name).app
    return {(path, method) for path, entries in app.routes.items() for method in entries}


def chalice_routes() -> set[tuple[str, str]]:
    return set().union(*(app_routes(module_name) for module_name in HTTP_APPS))


def test_every_api_event_is_a_chalice_route_and_every_route_has_an_api_event(
    template: dict[str, Any],
) -> None:
    events_by_route: set[tuple[str, str]] = set()
    for name, props in functions(template).items():
        for event in events(props, "Api"):
            module_name, _, attribute = props["Handler"].rpartition(".")
            assert module_name in HTTP_APPS and attribute == "app", (
                f"{name}: Api events belong to one of {[f'{m}.app' for m in HTTP_APPS]}"
            )
            assert ref_target(event.get("RestApiId")) == "RestApi", name
            route = (event["Path"], event["Method"].upper())
            assert route in app_routes(module_name), f"{name}: {route} is not a route of its app"
            events_by_route.add(route)
    assert events_by_route == chalice_routes()


def test_the_dashboard_is_one_page_at_the_root_and_needs_no_permissions(
    template: dict[str, Any],
) -> None:
    dashboard = functions(template)[by_handler(template)["dashboard.app"]]
    assert "Policies" not in dashboard  # it only answers with its page
    assert [(e["Path"], e["Method"]) for e in events(dashboard, "Api")] == [("/", "GET")]
    assert app_routes("dashboard") == {("/", "GET")}


# --- queues ---------------------------------------------------------------------------


def test_every_queue_url_variable_refers_to_a_queue_in_the_template(
    template: dict[str, Any],
) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    for variable, target in queue_variables(template).items():
        assert target in queues, f"{variable} refers to {target}, which is not an SQS queue"
        assert target not in dead_letter_queues(template), f"{variable} is a dead-letter queue"


def test_every_step_and_the_notifier_have_a_queue_and_a_function_consuming_it(
    template: dict[str, Any],
) -> None:
    variables = queue_variables(template)
    # The engine reads the template's variables: each names the queue of one step.
    settings = Settings.from_env(dict(variables))
    assert set(settings.step_queue_urls) == set(Step)
    assert settings.notify_queue_url is not None
    expected = {queue: f"workers.{step.value}" for step, queue in settings.step_queue_urls.items()}
    expected[settings.notify_queue_url] = "notifier.notify"

    consumers = sqs_consumers(template)
    fns = functions(template)
    for queue, handler in expected.items():
        assert [fns[f]["Handler"] for f in consumers.get(queue, [])] == [handler], queue


def test_every_work_queue_is_consumed_by_exactly_one_function(template: dict[str, Any]) -> None:
    consumers = sqs_consumers(template)
    dlqs = dead_letter_queues(template)
    for queue in resources(template, "AWS::SQS::Queue"):
        if queue in dlqs:
            assert queue not in consumers, f"{queue} is a DLQ: replay it, do not consume it"
        else:
            assert len(consumers.get(queue, [])) == 1, f"{queue}: {consumers.get(queue)}"


def test_every_work_queue_has_a_dead_letter_queue_after_five_receives(
    template: dict[str, Any],
) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    dlqs = dead_letter_queues(template)
    assert dlqs, "no dead-letter queues"
    for name, props in queues.items():
        if name in dlqs:
            assert "RedrivePolicy" not in props, f"{name}: a DLQ must not redrive further"
            continue
        redrive = props.get("RedrivePolicy")
        assert redrive is not None, f"{name} has no dead-letter queue"
        target = redrive["deadLetterTargetArn"]
        assert target == {"Fn::GetAtt": [ref_target(target), "Arn"]}, name
        assert ref_target(target) in queues, f"{name}: its DLQ {target} does not exist"
        assert redrive["maxReceiveCount"] == 5, name


def test_dead_letter_queues_keep_messages_longer_than_their_source_queues(
    template: dict[str, Any],
) -> None:
    # SQS expires a message by its original enqueue time, even after it moves to the DLQ.
    default_retention = 345_600  # 4 days
    queues = resources(template, "AWS::SQS::Queue")
    for name, props in queues.items():
        if "RedrivePolicy" not in props:
            continue
        dlq = queues[str(ref_target(props["RedrivePolicy"]["deadLetterTargetArn"]))]
        source = int(props.get("MessageRetentionPeriod", default_retention))
        assert int(dlq.get("MessageRetentionPeriod", default_retention)) > source, name


def test_every_sqs_event_reports_batch_item_failures_and_caps_concurrency(
    template: dict[str, Any],
) -> None:
    parameter = template["Parameters"]["MaximumConcurrency"]
    assert parameter["Default"] == 10
    seen = 0
    for name, props in functions(template).items():
        for event in events(props, "SQS"):
            seen += 1
            assert event.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], name
            assert event.get("ScalingConfig") == {
                "MaximumConcurrency": {"Ref": "MaximumConcurrency"}
            }, name
    assert seen == len(Step) + 2  # one per step, plus the notifier and the price watch


def test_queue_visibility_timeout_is_at_least_six_times_the_consumer_timeout(
    template: dict[str, Any],
) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    fns = functions(template)
    for queue, consumers in sqs_consumers(template).items():
        visibility = int(queues[queue].get("VisibilityTimeout", 30))
        for function in consumers:
            timeout = int(function_setting(template, fns[function], "Timeout") or 3)
            assert visibility >= 6 * timeout, f"{queue} {visibility}s vs {function} {timeout}s"


# Permissions: tests/unit/test_template_permissions.py derives them from the code.


# --- WebSocket API and schedule ------------------------------------------------------


def test_websocket_api_routes_connect_default_and_disconnect_to_their_handlers(
    template: dict[str, Any],
) -> None:
    (api_name, api), *others = resources(template, "AWS::ApiGatewayV2::Api").items()
    assert not others
    assert api["ProtocolType"] == "WEBSOCKET"
    assert api["RouteSelectionExpression"] == "$request.body.action"

    integrations = resources(template, "AWS::ApiGatewayV2::Integration")
    permissions = resources(template, "AWS::Lambda::Permission")
    fns = functions(template)
    chalice_ws = handler_module("websocket").app.websocket_handlers
    routes = {
        props["RouteKey"]: props
        for props in resources(template, "AWS::ApiGatewayV2::Route").values()
        if ref_target(props["ApiId"]) == api_name
    }
    assert set(routes) == {"$connect", "$default", "$disconnect"} == set(chalice_ws)

    for key, route in routes.items():
        match = re.fullmatch(r"integrations/\$\{(\w+)\}", route["Target"].get("Fn::Sub", ""))
        assert match, f"{key}: Target must be !Sub integrations/${{Integration}}"
        integration = integrations[match.group(1)]
        assert ref_target(integration["ApiId"]) == api_name
        assert integration["IntegrationType"] == "AWS_PROXY"
        uri = re.search(r"\$\{(\w+)\.Arn\}", integration["IntegrationUri"]["Fn::Sub"])
        assert uri, f"{key}: the integration must invoke a function"
        function = uri.group(1)
        assert fns[function]["Handler"] == f"websocket.{chalice_ws[key].name}", key
        assert isinstance(entry_point(fns[function]["Handler"]), WebsocketEventSourceHandler)
        assert any(
            ref_target(p["FunctionName"]) == function
            and p["Principal"] == "apigateway.amazonaws.com"
            for p in permissions.values()
        ), f"API Gateway may not invoke {function}"


def test_sweeper_runs_on_a_schedule(template: dict[str, Any]) -> None:
    sweeper = functions(template)[by_handler(template)["sweeper.sweep"]]
    schedules = [event["Schedule"] for event in events(sweeper, "Schedule")]
    assert len(schedules) == 1
    assert re.fullmatch(r"(rate|cron)\(.+\)", schedules[0])
