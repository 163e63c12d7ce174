"""The SAM transform, offline: template.yaml as the CloudFormation `sam deploy` sends."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.cfn import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


def transform(template: Mapping[str, Any], parameters: Mapping[str, str]) -> dict[str, Any]:
    """`template` translated by aws-sam-translator (no credentials, no network)."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = copy.deepcopy(dict(template))
    # What `sam package` does: local code directories become S3 objects.
    sam["Globals"]["Function"]["CodeUri"] = "s3://artifacts/functions.zip"
    for resource in sam["Resources"].values():
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = "s3://artifacts/layer.zip"
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            env.delenv(name, raising=False)
        session = boto3.session.Session(region_name="us-east-1")
        translator = Translator(None, Parser(), boto_session=session)
        result: dict[str, Any] = translator.translate(
            sam, parameter_values=dict(parameters), get_managed_policy_map=lambda: {}
        )
    return result


def of_type(template: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """{logical id: Properties} of every resource of type `kind`."""
    return {
        name: resource.get("Properties", {})
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


def template() -> dict[str, Any]:
    return load_template(TEMPLATE)
