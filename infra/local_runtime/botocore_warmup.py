"""Imported by the fork server only (sandboxes.SANDBOX_PRELOAD): botocore's data, parsed
once for every sandbox.

A function's first `boto3.client(...)` parses botocore's JSON (the endpoints, the
service's model and rules): about 40 ms of CPU for an SQS and an @connections client,
in every sandbox, at its first invocation, on the cores that serve the burst that made
the sandbox start. Parsed here, in boto3's default session, every sandbox inherits the
data, and `boto3.client` in a handler (which uses that session) only builds the client.

Only files are read: the session holds no credentials, region or endpoint yet, and it
reads those from the sandbox's own environment when a handler first makes a client.
The services are those the runtime gives functions: SQS and the @connections API.
"""

from __future__ import annotations

import contextlib

SERVICES = ("sqs", "apigatewaymanagementapi")
DATA = ("endpoints", "partitions", "_retry", "sdk-default-configuration")


def parse_botocore_data() -> None:
    try:
        import boto3
    except ImportError:  # a template whose functions do without boto3
        return
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    loader = boto3.DEFAULT_SESSION._session.get_component("data_loader")
    for name in DATA:
        with contextlib.suppress(Exception):  # an older botocore without some file
            loader.load_data(name)
    for service in SERVICES:
        for kind in ("service-2", "endpoint-rule-set-1"):
            with contextlib.suppress(Exception):
                # As botocore's ClientCreator asks: its cache keys on the arguments.
                loader.load_service_model(service, kind, api_version=None)


parse_botocore_data()
