"""Reading SAM templates: short tags, parameters, conditions, globals and intrinsics."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_runtime.cfn_yaml import load_yaml
from local_runtime.intrinsics import IntrinsicError, Resolver, ResourceValues
from local_runtime.resources import TemplatePlanner
from local_runtime.template import SamTemplate, TemplateError, merge_globals

TOY = Path(__file__).resolve().parents[2] / "fixtures" / "toy_app" / "template.yaml"


def resolver(**refs: object) -> Resolver:
    values = ResourceValues()
    for name, value in refs.items():
        values.set(name, value, Arn=f"arn:{name}")
    return Resolver(
        parameters={"Stage": "dev", "Names": ["a", "b"]},
        pseudo={"AWS::Region": "eu-west-1", "AWS::AccountId": "111122223333"},
        resources=values,
        conditions={
            "IsDev": {"Fn::Equals": [{"Ref": "Stage"}, "dev"]},
            "IsProd": {"Fn::Not": [{"Condition": "IsDev"}]},
        },
        mappings={"Sizes": {"dev": {"Memory": 128}}},
    )


def test_short_tags_become_the_long_json_form() -> None:
    document = load_yaml("""
A: !Ref Thing
B: !GetAtt Queue.Arn
C: !Sub "x-${AWS::Region}"
D: !Join [",", [a, !Ref Thing]]
E: !If [IsDev, 1, 2]
F: !Equals [a, b]
G: !Select [0, !GetAZs ""]
H: !Condition IsDev
V: '2010-09-09'
W: 2010-09-09
""")
    assert document["A"] == {"Ref": "Thing"}
    assert document["B"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert document["C"] == {"Fn::Sub": "x-${AWS::Region}"}
    assert document["D"] == {"Fn::Join": [",", ["a", {"Ref": "Thing"}]]}
    assert document["E"] == {"Fn::If": ["IsDev", 1, 2]}
    assert document["G"] == {"Fn::Select": [0, {"Fn::GetAZs": ""}]}
    assert document["H"] == {"Condition": "IsDev"}
    assert document["W"] == "2010-09-09"  # dates stay strings, as CloudFormation reads them


def test_intrinsics_resolve_refs_attributes_sub_join_if_and_equals() -> None:
    r = resolver(Queue="http://q")
    assert r.resolve({"Ref": "Queue"}) == "http://q"
    assert r.resolve({"Ref": "AWS::Region"}) == "eu-west-1"
    assert r.resolve({"Fn::GetAtt": ["Queue", "Arn"]}) == "arn:Queue"
    assert r.resolve({"Fn::GetAtt": "Queue.Arn"}) == "arn:Queue"
    assert r.resolve({"Fn::Sub": "${Queue.Arn}/${Stage}/${AWS::AccountId}/${!Literal}"}) == (
        "arn:Queue/dev/111122223333/${Literal}"
    )
    assert r.resolve({"Fn::Sub": ["${X}-${Stage}", {"X": {"Ref": "Queue"}}]}) == "http://q-dev"
    assert r.resolve({"Fn::Join": ["-", ["a", {"Ref": "Stage"}]]}) == "a-dev"
    assert r.resolve({"Fn::If": ["IsDev", "yes", "no"]}) == "yes"
    assert r.resolve({"Fn::If": ["IsProd", "yes", "no"]}) == "no"
    assert r.resolve({"Fn::Equals": ["a", "a"]}) is True
    assert r.resolve({"Fn::Select": [1, {"Ref": "Names"}]}) == "b"
    assert r.resolve({"Fn::Split": [",", "x,y"]}) == ["x", "y"]
    assert r.resolve({"Fn::FindInMap": ["Sizes", "dev", "Memory"]}) == 128
    assert r.resolve({"Fn::GetAZs": ""}) == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


def test_aws_novalue_removes_the_property() -> None:
    value = {"Keep": 1, "Drop": {"Fn::If": ["IsProd", 2, {"Ref": "AWS::NoValue"}]}}
    assert resolver().resolve(value) == {"Keep": 1}


def test_a_reference_to_an_unknown_name_is_a_readable_error() -> None:
    with pytest.raises(IntrinsicError, match="Nope"):
        resolver().resolve({"Ref": "Nope"})


def test_globals_merge_maps_concatenate_lists_and_let_functions_override_scalars() -> None:
    merged = merge_globals(
        {"Timeout": 5, "Layers": ["g"], "Environment": {"Variables": {"A": "1", "B": "1"}}},
        {"Timeout": 9, "Layers": ["f"], "Environment": {"Variables": {"B": "2"}}},
    )
    assert merged == {
        "Timeout": 9,
        "Layers": ["g", "f"],
        "Environment": {"Variables": {"A": "1", "B": "2"}},
    }


def test_parameters_take_defaults_and_overrides_and_reject_unknown_names() -> None:
    assert SamTemplate(TOY).parameters == {"Stage": "local", "WorkVisibility": "2"}
    assert SamTemplate(TOY, {"Stage": "prod"}).parameters["Stage"] == "prod"
    with pytest.raises(TemplateError, match="undeclared"):
        SamTemplate(TOY, {"Nope": "1"})


def _plan() -> TemplatePlanner:
    return TemplatePlanner(
        SamTemplate(TOY), region="us-east-1", account_id="123456789012", stack_name="toy"
    )


def test_queues_are_created_dead_letter_queues_first_with_resolved_redrive_arns() -> None:
    planner = _plan()
    created: list[tuple[str, dict[str, str]]] = []

    def create(name: str, attributes: dict[str, str]) -> tuple[str, str]:
        created.append((name, attributes))
        return f"http://sqs/{name}", f"arn:aws:sqs:us-east-1:123456789012:{name}"

    queues = planner.create_queues(create)
    names = [name for name, _ in created]
    assert names.index("toy-work-dlq") < names.index("toy-WorkQueue")
    assert names.index("toy-PoisonDLQ") < names.index("toy-PoisonQueue")
    work = dict(created)["toy-WorkQueue"]
    assert work["VisibilityTimeout"] == "2"
    assert (
        '"deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:toy-work-dlq"'
        in (work["RedrivePolicy"])
    )
    fifo = dict(created)["toy-OrdersFifo.fifo"]
    assert fifo == {
        "ReceiveMessageWaitTimeSeconds": "5",
        "FifoQueue": "true",
        "ContentBasedDeduplication": "true",
    }
    assert "OnlyInProd" not in queues  # its Condition is false
    assert queues["WorkQueue"].url == "http://sqs/toy-WorkQueue"


def test_functions_resolve_globals_layers_events_and_queue_references() -> None:
    planner = _plan()
    planner.create_queues(lambda n, a: (f"http://sqs/{n}", f"arn:aws:sqs:us-east-1:1:{n}"))
    functions = planner.functions()
    batch = functions["BatchFunction"]
    assert batch.handler == "handler.batch" and batch.timeout == 2 and batch.memory_mb == 256
    assert functions["RestFunction"].timeout == 5  # from Globals
    assert batch.layers[0].python_dir.name == "python"
    assert batch.environment["WORK_QUEUE"] == "http://sqs/toy-WorkQueue"
    (sqs,) = batch.sqs_events
    assert sqs.queue_arn == "arn:aws:sqs:us-east-1:1:toy-WorkQueue"
    assert (sqs.batch_size, sqs.batching_window, sqs.maximum_concurrency) == (10, 1.0, 2)
    assert sqs.report_batch_item_failures
    assert not functions["PoisonFunction"].sqs_events[0].report_batch_item_failures
    assert functions["PlainHttpFunction"].timeout == 1
    tick = functions["TickFunction"].schedule_events
    assert [(s.expression, s.enabled) for s in tick] == [
        ("rate(1 minute)", True),
        ("cron(0 3 * * ? *)", False),
    ]
    routes = {(e.method, e.path) for e in functions["RestFunction"].api_events}
    assert ("ANY", "/items/{item_id}") in routes


def test_websocket_api_routes_map_to_functions_through_integrations() -> None:
    planner = _plan()
    planner.create_queues(lambda n, a: (n, n))
    (api,) = planner.websocket_apis(planner.functions())
    assert api.stage == "local"
    assert api.route_selection_expression == "$request.body.action"
    assert api.routes == {
        "$connect": "WsConnectFunction",
        "$default": "WsMessageFunction",
        "$disconnect": "WsDisconnectFunction",
        "shout": "WsShoutFunction",
        "whisper": "WsShoutFunction",
    }
    assert api.two_way_routes == {"shout"}  # the only route with a route response
    assert len(api.api_id) == 10 and api.api_id == planner.values.refs["WebSocketApi"]


def test_unknown_resource_types_are_reported_once_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _plan()
    warnings = [r.message for r in caplog.records if "NotRunLocally" in r.message]
    assert len(warnings) == 1 and "AWS::SNS::Topic" in warnings[0]
