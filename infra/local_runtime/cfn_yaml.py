"""Read CloudFormation/SAM YAML, short tags included (`!Ref X` -> `{"Ref": "X"}`).

PyYAML rejects unknown tags, and every SAM template uses them; this loader turns each
short form into the long JSON form, so the rest of the runtime sees one shape only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class TemplateSyntaxError(ValueError):
    """The file is not a YAML/JSON CloudFormation template."""


class _CfnLoader(yaml.SafeLoader):
    pass


# CloudFormation dates such as AWSTemplateFormatVersion '2010-09-09' must stay strings.
_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct(loader: _CfnLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise TemplateSyntaxError(f"unexpected YAML node {node!r}")


def _short_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> Any:
    value = _construct(loader, node)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        # "Resource.Attribute" (attribute names may contain dots: split on the first).
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_tag)


def load_yaml(text: str, source: str = "<template>") -> dict[str, Any]:
    """Parse template text (YAML or JSON, which is YAML) into plain dicts and lists."""
    try:
        document = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise TemplateSyntaxError(f"{source}: not valid YAML: {error}") from error
    if not isinstance(document, dict):
        raise TemplateSyntaxError(f"{source}: a template must be a mapping at the top level")
    return document


def load_template_file(path: Path) -> dict[str, Any]:
    return load_yaml(path.read_text(), str(path))
