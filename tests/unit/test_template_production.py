"""template.yaml's production parameters, as CloudFormation would deploy them after the
SAM transform: the database secret, the VPC, X-Ray tracing and reserved concurrency."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.cfn_conditions import choose, condition_values, parameter_values
from tests.support.sam import of_type, template, transform

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:orders-db-AbCdEf"
PASSWORD = "s3cr3t-Pa55word"
URL = f"postgresql://orders:{PASSWORD}@db.internal:5432/orders"


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return template()


def deployed(sam: dict[str, Any], **given: str) -> dict[str, Any]:
    parameters = parameter_values(sam, given)
    return choose(transform(sam, given), condition_values(sam, parameters))


def functions(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return of_type(resources, "AWS::Lambda::Function")


XRAY = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"


def managed_policies(resources: dict[str, Any], function: dict[str, Any]) -> list[str]:
    role = resources["Resources"][function["Role"]["Fn::GetAtt"][0]]["Properties"]
    return list(role["ManagedPolicyArns"])


def uses_database(name: str) -> bool:
    return name != "DashboardFunction"  # it serves one static page


def secret_statements(resources: dict[str, Any], function: dict[str, Any]) -> list[Any]:
    role = resources["Resources"][function["Role"]["Fn::GetAtt"][0]]["Properties"]
    return [
        statement
        for policy in role.get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        if any(str(a).startswith("secretsmanager:") for a in _list(statement["Action"]))
    ]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_with_the_secret_no_function_environment_holds_a_password_or_url_without_it_the_url(
    sam: dict[str, Any],
) -> None:
    resources = deployed(sam, DatabaseSecretArn=SECRET, DatabaseUrl=URL)
    for name, function in functions(resources).items():
        variables = function["Environment"]["Variables"]
        assert "DATABASE_URL" not in variables, name
        assert PASSWORD not in repr(variables), name
        if uses_database(name):
            assert variables["DATABASE_SECRET_ARN"] == {"Ref": "DatabaseSecretArn"}, name
            (statement,) = secret_statements(resources, function)
            assert _list(statement["Action"]) == ["secretsmanager:GetSecretValue"], name
            assert statement["Resource"]["Fn::Sub"][1] == {
                "secretArn": {"Ref": "DatabaseSecretArn"}
            }, name
        else:
            assert secret_statements(resources, function) == [], name

    # Where to connect: RDS Proxy's endpoint, and the database, in libpq's own names.
    proxied = deployed(
        sam, DatabaseSecretArn=SECRET, DatabaseHost="proxy.example", DatabaseName="orders"
    )
    for name, function in functions(proxied).items():
        variables = function["Environment"]["Variables"]
        assert variables["PGHOST"] == {"Ref": "DatabaseHost"}, name
        assert variables["PGDATABASE"] == {"Ref": "DatabaseName"}, name

    # Without the secret (outside AWS), DATABASE_URL works as it always did.
    resources = deployed(sam, DatabaseUrl=URL)
    for name, function in functions(resources).items():
        variables = function["Environment"]["Variables"]
        assert variables["DATABASE_URL"] == {"Ref": "DatabaseUrl"}, name
        assert "DATABASE_SECRET_ARN" not in variables, name
        assert secret_statements(resources, function) == [], name


def test_a_stack_without_any_database_is_refused_by_a_rule(sam: dict[str, Any]) -> None:
    (rule,) = sam["Rules"].values()
    (assertion,) = rule["Assertions"]
    conditions = assertion["Assert"]["Fn::Or"]
    named = {c["Fn::Not"][0]["Fn::Equals"][0]["Ref"] for c in conditions}
    assert named == {"DatabaseUrl", "DatabaseSecretArn"}


def test_functions_join_the_vpc_only_when_subnets_and_security_groups_are_given(
    sam: dict[str, Any],
) -> None:
    inside = deployed(sam, DatabaseUrl=URL, SubnetIds="subnet-1,subnet-2", SecurityGroupIds="sg-1")
    for name, function in functions(inside).items():
        assert function["VpcConfig"] == {
            "SubnetIds": {"Ref": "SubnetIds"},
            "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
        }, name
    for given in ({}, {"SubnetIds": "subnet-1"}):
        outside = deployed(sam, DatabaseUrl=URL, **given)
        for name, function in functions(outside).items():
            assert "VpcConfig" not in function, name


def test_tracing_is_off_by_default_and_one_parameter_turns_it_on_everywhere(
    sam: dict[str, Any],
) -> None:
    for value, disabled in (("Disabled", "true"), ("Active", "false")):
        given = {"DatabaseUrl": URL} | ({"Tracing": value} if value == "Active" else {})
        resources = deployed(sam, **given)
        for name, function in functions(resources).items():
            if value == "Active":
                assert function["TracingConfig"] == {"Mode": {"Ref": "Tracing"}}, name
                assert XRAY in managed_policies(resources, function), name
            else:
                assert "TracingConfig" not in function, name
                assert XRAY not in managed_policies(resources, function), name
            assert function["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == disabled
        (stage,) = of_type(resources, "AWS::ApiGateway::Stage").values()
        assert stage["TracingEnabled"] is (value == "Active")


def test_functions_not_bounded_by_a_queue_have_reserved_concurrency_unless_zero(
    sam: dict[str, Any],
) -> None:
    reserved = {
        name: function.get("ReservedConcurrentExecutions")
        for name, function in functions(deployed(sam, DatabaseUrl=URL)).items()
    }
    assert reserved["ApiFunction"] == {"Ref": "ApiConcurrency"}
    for name in ("ConnectFunction", "MessageFunction", "DisconnectFunction"):
        assert reserved[name] == {"Ref": "WebSocketConcurrency"}
    unbounded = deployed(sam, DatabaseUrl=URL, ApiConcurrency="0", WebSocketConcurrency="0")
    assert all(
        "ReservedConcurrentExecutions" not in function for function in functions(unbounded).values()
    )
