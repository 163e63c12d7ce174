"""Least privilege: after the SAM transform, each function's IAM statements allow exactly
the queues and APIs its code uses, no more and no fewer.

What the code uses is derived from the code, not listed by hand:
- the topics an operation can publish come from the engine's own message builders
  (`first_messages`, `transition_messages` over the transition table, the steps' topics);
- a topic's queue comes from the function's environment read through `Settings.from_env`
  (which *_QUEUE_URL variable the engine's wiring takes for each topic);
- a function needs the database secret if its handler module uses the engine's wiring.
- which engine calls each entry point makes is read from functions/*.py (its syntax
  tree); what each engine call needs is said once, in ENGINE_CALLS, and a call it does
  not name fails the test.
"""

from __future__ import annotations

import ast
import copy
import re
import uuid
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from order_engine.messaging import NOTIFY_TOPIC, WATCH_TOPIC
from order_engine.orders import Status, Step
from order_engine.outbox import first_messages, transition_messages
from order_engine.settings import Settings
from tests.support.cfn import ref_target
from tests.support.cfn_conditions import choose, condition_values, parameter_values
from tests.support.sam import of_type, template, transform

ROOT = Path(__file__).resolve().parents[2]
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:orders-db-AbCdEf"
ANY_ORDER = uuid.UUID(int=0)

Grant = tuple[str, str]  # (what, on which resource): ("send", "RouteQueue")

# --- what the engine's operations touch, from the engine's own code ------------------


def _topics(messages: Iterable[Any]) -> set[str]:
    return {message.topic for message in messages}


def step_topics(step: Step) -> set[str]:
    """An applied step writes the outbox rows of its target state, a failed one those
    of `failed` (a transient error retries by delaying its own message instead)."""
    return _topics(transition_messages(ANY_ORDER, step.to_status)) | _topics(
        transition_messages(ANY_ORDER, Status.FAILED)
    )


def outbox_topics() -> set[str]:
    """Every topic an outbox row can have: a new order's, and any transition's."""
    rows = set(_topics(first_messages(ANY_ORDER)))
    for status in Status:
        rows |= _topics(transition_messages(ANY_ORDER, status))
    return rows


def operation_needs(operation: str, configured: set[str]) -> set[tuple[str, str]]:
    """(action, topic or API) pairs an engine operation needs; `configured`: the topics
    the function's environment gives a queue to."""
    if operation == "place_order":  # OrderService.place_order: the new order's outbox
        return {("send", t) for t in _topics(first_messages(ANY_ORDER))}
    if operation == "cancel_order":  # OrderService.cancel_order: the cancel's outbox
        return {("send", t) for t in _topics(transition_messages(ANY_ORDER, Status.CANCELLED))}
    if operation == "health":  # Publisher.check: GetQueueUrl of every configured queue
        return {("get_queue_url", t) for t in configured}
    if operation == "connect":  # OrderService.connect: the delayed subscribe hint
        return {("send", NOTIFY_TOPIC)}
    if operation == "post":  # ConnectionSender: @connections posts
        return {("manage_connections", "WebSocketApi")}
    if operation.startswith("step:"):  # consumers.handle_step_batch
        # An applied step posts its event to the order's subscribers itself (the
        # pipeline's outbox), sending the notification only when that fails.
        step = Step(operation.removeprefix("step:"))
        needs = {("send", t) for t in step_topics(step)} | {
            ("visibility", step.value),
            ("manage_connections", "WebSocketApi"),
        }
        if step is Step.ROUTE:  # a limit order starts watching, and may seed the tick
            needs |= {("send", t) for t in _topics(transition_messages(ANY_ORDER, Status.WATCHING))}
            needs |= operation_needs("watch_seed", configured)
        return needs
    if operation == "watch_seed":  # PriceWatch.ensure_running: a tick, sent now
        return {("send", WATCH_TOPIC)}
    if operation == "watch":  # consumers.handle_watch_batch: expire, trigger, next tick
        expired = _topics(transition_messages(ANY_ORDER, Status.EXPIRED))
        return {("send", t) for t in expired | {Step.ROUTE.value, WATCH_TOPIC}} | {
            ("visibility", WATCH_TOPIC)
        }
    if operation == "notify":  # consumers.handle_notify_batch (poison -> visible at once)
        return {("visibility", NOTIFY_TOPIC), ("manage_connections", "WebSocketApi")}
    if operation == "sweep":  # Sweeper: relay any outbox row, re-drive any step
        return {("send", t) for t in outbox_topics() | {step.value for step in Step}}
    raise AssertionError(f"unknown operation {operation}")


# What each engine call a handler can make needs from AWS ("" for nothing). A call not
# listed here fails the test: a new one must say what it needs.
ENGINE_CALLS: dict[str, set[str]] = {
    "orders.admit": set(),
    "orders.place_order_json": {"place_order"},
    "orders.place_order": {"place_order"},
    "orders.execute": {"place_order", "post"},  # places, answers "accepted", subscribes
    "orders.subscribe": {"post"},  # sends the snapshot itself
    "orders.subscribe_connection": {"post"},  # the same, for the connection's own caller
    "orders.health": {"health"},
    "orders.connect": {"connect"},
    "orders.get_order": set(),
    "orders.list_orders": set(),
    "orders.cancel_order": {"cancel_order"},
    "orders.disconnect": set(),
    "accounts.authenticate": set(),
    "accounts.authenticate_connection": set(),
    "sender.send": {"post"},
    "settings.websocket_url": set(),
    "sweeper.sweep": {"sweep"},
    "watch.ensure_running": {"watch_seed"},
    "handle_notify_batch": {"notify"},
    "handle_watch_batch": {"watch"},
    # handle_step_batch(engine(), Step.X, …) is "step:x".
}


def handler_calls(handler: str) -> set[str]:
    """The engine calls an entry point's code makes, read from functions/<module>.py: the
    decorated function (every route, for a Chalice app) and the module's functions it
    calls, `engine().<part>.<name>` chains, and the consumers' batch handlers."""
    module_name, _, attribute = handler.rpartition(".")
    tree = ast.parse((ROOT / "functions" / f"{module_name}.py").read_text())
    defined = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    if attribute == "app":
        roots = [node for node in defined.values() if _is_route(node)]
    else:
        roots = [defined[attribute]]
    calls: set[str] = set()
    seen: set[str] = set()
    while roots:
        function = roots.pop()
        if function.name in seen:
            continue
        seen.add(function.name)
        for node in ast.walk(function):
            if isinstance(node, ast.Attribute) and _on_engine(node.value):
                calls.add(f"{_on_engine(node.value)}.{node.attr}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                name = node.func.id
                if name in defined:
                    roots.append(defined[name])
                elif name == "handle_step_batch":
                    step = node.args[1]
                    assert isinstance(step, ast.Attribute), ast.dump(step)
                    calls.add(f"step:{Step[step.attr].value}")
                elif name in ("handle_notify_batch", "handle_watch_batch"):
                    calls.add(name)
    return calls


def _is_route(node: ast.FunctionDef) -> bool:
    return any(
        isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "route"
        for d in node.decorator_list
    )


def _on_engine(node: ast.expr) -> str | None:
    """ "orders" for `engine().orders`, else None."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "engine"
    ):
        return node.attr
    return None


def operations(handler: str) -> set[str]:
    found: set[str] = set()
    for call in handler_calls(handler):
        if call.startswith("step:"):
            found.add(call)
            continue
        assert call in ENGINE_CALLS, f"{handler} calls {call}: say what it needs in ENGINE_CALLS"
        found |= ENGINE_CALLS[call]
    return found


@cache
def uses_engine(module_name: str) -> bool:
    """Whether functions/<module>.py builds the engine (and so opens the database)."""
    source = (ROOT / "functions" / f"{module_name}.py").read_text()
    return "from order_engine.wiring import engine" in source


def topic_queues(environment: dict[str, Any]) -> dict[str, str]:
    """{topic: queue logical id}, as the engine's wiring reads the environment."""
    by_name = {name: ref_target(value) or "" for name, value in environment.items()}
    settings = Settings.from_env({k: v for k, v in by_name.items() if k.endswith("_QUEUE_URL")})
    queues = {step.value: url for step, url in settings.step_queue_urls.items()}
    if settings.notify_queue_url:
        queues[NOTIFY_TOPIC] = settings.notify_queue_url
    if settings.watch_queue_url:
        queues[WATCH_TOPIC] = settings.watch_queue_url
    return queues


def needed(function: dict[str, Any]) -> set[Grant]:
    handler = function["Handler"]
    queues = topic_queues(function["Environment"]["Variables"])
    grants: set[Grant] = set()
    for operation in operations(handler):
        for action, target in operation_needs(operation, set(queues)):
            grants.add((action, target if target == "WebSocketApi" else queues[target]))
    if uses_engine(handler.rpartition(".")[0]):
        grants.add(("get_secret", "DatabaseSecretArn"))
    return grants


# --- what the IAM statements allow ----------------------------------------------------

ACTIONS = {
    "sqs:SendMessage*": "send",
    "sqs:ChangeMessageVisibility": "visibility",
    "sqs:GetQueueUrl": "get_queue_url",
    "execute-api:ManageConnections": "manage_connections",
    "secretsmanager:GetSecretValue": "get_secret",
}


def _resource(resource: Any) -> str:
    """The logical id a statement's Resource names ("*" and anything else as is)."""
    if (target := ref_target(resource)) is not None:
        return target
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        sub = resource["Fn::Sub"]
        if isinstance(sub, list):  # SAM policy templates: ["…${name}…", {name: ref}]
            (value,) = sub[1].values()
            return _resource(value)
        if match := re.fullmatch(r"arn:\$\{AWS::Partition\}:execute-api:.*:\$\{(\w+)\}/\*", sub):
            return match.group(1)
    return repr(resource)


def granted(resources: dict[str, Any], function: dict[str, Any]) -> set[Grant]:
    role = resources["Resources"][function["Role"]["Fn::GetAtt"][0]]["Properties"]
    grants: set[Grant] = set()
    for policy in role.get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow", statement
            actions = statement["Action"]
            targets = statement["Resource"]
            for action in actions if isinstance(actions, list) else [actions]:
                for target in targets if isinstance(targets, list) else [targets]:
                    grants.add((ACTIONS.get(action, action), _resource(target)))
    return grants


def sqs_triggered(function_id: str, resources: dict[str, Any]) -> bool:
    return any(
        ref_target(mapping["FunctionName"]) == function_id
        for mapping in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    )


def managed_policies_allowed(function_id: str, resources: dict[str, Any]) -> set[str]:
    """What SAM attaches: logs always; the poller's SQS access for queue-triggered
    functions; ENI management because VpcConfig is present (an empty one when not in a
    VPC: SAM cannot tell); X-Ray only with Tracing=Active."""
    base = "arn:aws:iam::aws:policy/"
    allowed = {
        base + "service-role/AWSLambdaBasicExecutionRole",
        base + "service-role/AWSLambdaVPCAccessExecutionRole",
    }
    if sqs_triggered(function_id, resources):
        allowed.add(base + "service-role/AWSLambdaSQSQueueExecutionRole")
    return allowed


def privilege_problems(sam: dict[str, Any]) -> list[str]:
    given = {"DatabaseSecretArn": SECRET}
    resources = choose(transform(sam, given), condition_values(sam, parameter_values(sam, given)))
    problems = []
    for name, function in of_type(resources, "AWS::Lambda::Function").items():
        need, have = needed(function), granted(resources, function)
        if extra := have - need:
            problems.append(f"{name} is allowed more than its code uses: {sorted(extra)}")
        if missing := need - have:
            problems.append(f"{name} is not allowed what its code uses: {sorted(missing)}")
        role = resources["Resources"][function["Role"]["Fn::GetAtt"][0]]["Properties"]
        managed = set(role["ManagedPolicyArns"]) - managed_policies_allowed(name, resources)
        if managed:
            problems.append(f"{name} has managed policies it does not need: {sorted(managed)}")
    return problems


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return template()


def test_each_function_is_allowed_exactly_the_queues_and_apis_its_code_uses(
    sam: dict[str, Any],
) -> None:
    assert privilege_problems(sam) == []


def test_the_calls_read_from_the_handlers_are_the_ones_they_make() -> None:
    assert handler_calls("workers.submit") == {"step:submit"}
    assert handler_calls("sweeper.sweep") == {"sweeper.sweep", "watch.ensure_running"}
    assert handler_calls("watcher.tick") == {"handle_watch_batch"}
    assert {"orders.place_order_json", "orders.health"} <= handler_calls("api.app")
    assert {"orders.execute", "orders.subscribe", "sender.send"} <= handler_calls(
        "websocket.message"
    )
    assert handler_calls("dashboard.app") == set()


def test_a_planted_extra_permission_is_found(sam: dict[str, Any]) -> None:
    planted = copy.deepcopy(sam)
    api = planted["Resources"]["ApiFunction"]["Properties"]
    api["Policies"].append(
        {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["ConfirmQueue", "QueueName"]}}}
    )
    notifier = planted["Resources"]["NotifierFunction"]["Properties"]
    notifier["Policies"].append(
        {"Statement": [{"Effect": "Allow", "Action": "sqs:DeleteQueue", "Resource": "*"}]}
    )

    assert privilege_problems(planted) == [
        "ApiFunction is allowed more than its code uses: [('send', 'ConfirmQueue')]",
        "NotifierFunction is allowed more than its code uses: [('sqs:DeleteQueue', \"'*'\")]",
    ]
