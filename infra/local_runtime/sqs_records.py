"""An SQS message as boto3 receives it -> the record Lambda hands to the function.

Lambda renames everything to lower camel case (`MessageId` -> `messageId`,
`StringValue` -> `stringValue`), keeps system attributes as strings and base64-encodes
binary message attributes.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any


def _attribute_value(value: dict[str, Any]) -> dict[str, Any]:
    def b64(blob: bytes | str) -> str:
        return base64.b64encode(blob if isinstance(blob, bytes) else blob.encode()).decode()

    converted: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues") or []),
        "binaryListValues": [b64(v) for v in value.get("BinaryListValues") or []],
        "dataType": value.get("DataType", "String"),
    }
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = b64(value["BinaryValue"])
    return converted


def lambda_record(message: dict[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {k: str(v) for k, v in (message.get("Attributes") or {}).items()},
        "messageAttributes": {
            name: _attribute_value(value)
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def sqs_event(messages: Sequence[dict[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
    return {"Records": [lambda_record(m, queue_arn=queue_arn, region=region) for m in messages]}
