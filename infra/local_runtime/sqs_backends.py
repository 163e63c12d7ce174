"""Where SQS comes from: a server we start (MiniStack, moto, LocalStack), or an endpoint.

The option is one string:
- "ministack" (default): MiniStack, SQS only, in its own venv (see ministack_host.py), on
  a free port, stopped with the runtime. It stays fast with thousands of messages
  queued, where moto's receives slow down with the backlog (docs/local-runtime.md);
- "moto": `python -m moto.server` on a free port, stopped with the runtime;
- "localstack": LocalStack on the host, in its own venv (see localstack_host.py);
- "aws": the real SQS of the configured account and region;
- any "http(s)://..." URL: an SQS already running there (docker-compose's LocalStack...).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from localstack_client.session import Session as LocalStackSession

from local_runtime.processes import ManagedProcess, free_port

log = logging.getLogger(__name__)

# Emulators accept any credentials; these are what their docs use.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
MOTO_ACCOUNT = "123456789012"
LOCALSTACK_ACCOUNT = "000000000000"
MINISTACK_ACCOUNT = "000000000000"
DEFAULT_BACKEND = "ministack"
CHOICES = "ministack, moto, localstack, aws or an http(s):// URL"


@dataclass(frozen=True)
class SqsTarget:
    """The SQS the runtime and its functions talk to."""

    endpoint_url: str | None  # None: AWS's own endpoint
    description: str
    account_id: str
    emulated: bool  # True: dummy credentials are fine
    kind: str

    def client(
        self, region: str, *, max_attempts: int | None = None, max_connections: int | None = None
    ) -> Any:
        """A boto3 SQS client; `max_attempts` caps botocore's retries (pollers retry
        themselves, and must notice a stopped server quickly); `max_connections` is how
        many threads may use it at once without a new TCP connection each (botocore
        keeps 10 and drops the rest after use)."""
        options: dict[str, Any] = {}
        if max_attempts:
            options["retries"] = {"mode": "standard", "total_max_attempts": max_attempts}
        if max_connections:
            options["max_pool_connections"] = max(10, max_connections)
        config = Config(**options) if options else None
        if self.kind == "localstack" and self.endpoint_url:
            # localstack-client keeps LocalStack's endpoint and test credentials in one place.
            host = self.endpoint_url.split("://", 1)[1]
            session = LocalStackSession(region_name=region, localstack_host=host)
            return session.client("sqs", config=config)
        kwargs: dict[str, Any] = {"region_name": region, "config": config}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.emulated:
            kwargs["aws_access_key_id"] = DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"]
            kwargs["aws_secret_access_key"] = DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
        return boto3.session.Session().client("sqs", **kwargs)

    def poll_client(self, region: str, *, max_connections: int) -> Any:
        """The client of a poller's own calls (receive, delete, release), which retry once.

        An emulator on this machine gets SqsPollClient: the same calls for a fraction of
        botocore's CPU (sqs_poll_client.py), signed with the dummy credentials boto3 would
        send, so the server sees the same region and account. The real SQS keeps boto3:
        there a call's network time dwarfs its CPU, and botocore's credential refresh,
        endpoint resolution, proxies and CA bundles are worth having.
        """
        if self.endpoint_url and self.emulated:
            from local_runtime.sqs_poll_client import SqsPollClient

            return SqsPollClient(
                self.endpoint_url,
                region=region,
                access_key=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                secret_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                max_attempts=2,
                verify_tls=self.kind != "localstack",  # as localstack-client's session
            )
        return self.client(region, max_attempts=2, max_connections=max_connections)

    def environment(self) -> dict[str, str]:
        """What functions need to reach this SQS with boto3's standard variables."""
        env: dict[str, str] = {}
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL_SQS"] = self.endpoint_url
        return env


class SqsBackend:
    """Starts (or just names) an SQS; `stop()` stops what `start()` started."""

    def __init__(self, option: str, *, data_dir: Path, region: str) -> None:
        self.option = option
        self.data_dir = data_dir
        self.region = region
        self._process: ManagedProcess | None = None

    def start(self) -> SqsTarget:
        option = self.option.strip()
        if option == "ministack":
            return self._start_ministack()
        if option == "moto":
            return self._start_moto()
        if option == "localstack":
            return self._start_localstack()
        if option == "aws":
            return SqsTarget(
                None,
                f"AWS SQS ({self.region})",
                _aws_account(self.region),
                emulated=False,
                kind="aws",
            )
        if option.startswith(("http://", "https://")):
            emulated = "amazonaws.com" not in option
            account = LOCALSTACK_ACCOUNT if emulated else _aws_account(self.region)
            return SqsTarget(
                option.rstrip("/"),
                f"SQS at {option}",
                account,
                emulated,
                kind="localstack" if emulated else "endpoint",
            )
        raise ValueError(f"unknown SQS backend {option!r}: use {CHOICES}")

    @property
    def pid(self) -> int | None:
        """The process id of the SQS server we started (None: we started none)."""
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def _start_moto(self) -> SqsTarget:
        port = free_port()
        self._process = ManagedProcess(
            "moto server",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, **DUMMY_CREDENTIALS},
            log_path=self.data_dir / "logs" / f"moto-{port}.log",
        )
        endpoint = f"http://127.0.0.1:{port}"
        self._process.wait_http(f"{endpoint}/moto-api/", timeout=30)
        return SqsTarget(
            endpoint,
            f"moto server at {endpoint} (pid {self._process.pid})",
            MOTO_ACCOUNT,
            emulated=True,
            kind="moto",
        )

    def _start_ministack(self) -> SqsTarget:
        from local_runtime.ministack_host import start_ministack

        self._process, endpoint = start_ministack(
            self.data_dir / "ministack-venv",
            (self.data_dir / "ministack").absolute(),
            self.data_dir / "logs",
            extra_env=DUMMY_CREDENTIALS,
        )
        return SqsTarget(
            endpoint,
            f"MiniStack at {endpoint} (pid {self._process.pid})",
            MINISTACK_ACCOUNT,
            emulated=True,
            kind="ministack",
        )

    def _start_localstack(self) -> SqsTarget:
        from local_runtime.localstack_host import start_localstack

        self._process, endpoint = start_localstack(
            self.data_dir / "localstack-venv", (self.data_dir / "localstack").absolute()
        )
        return SqsTarget(
            endpoint,
            f"LocalStack on the host at {endpoint} (pid {self._process.pid})",
            LOCALSTACK_ACCOUNT,
            emulated=True,
            kind="localstack",
        )


def _aws_account(region: str) -> str:
    try:
        identity = boto3.session.Session().client("sts", region_name=region).get_caller_identity()
        return str(identity["Account"])
    except Exception as error:  # no credentials yet: ARNs are only cosmetic locally
        log.warning("could not read the AWS account id (%s); using 000000000000", error)
        return LOCALSTACK_ACCOUNT


def create_or_update_queue(client: Any, name: str, attributes: dict[str, str]) -> tuple[str, str]:
    """Create a queue (or update one left by an earlier run); returns (url, arn)."""
    try:
        url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except client.exceptions.QueueNameExists:
        # A long-lived SQS (docker-compose LocalStack, AWS) keeps queues between runs:
        # bring the existing one in line with the template.
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
        settable = {k: v for k, v in attributes.items() if k != "FifoQueue"}
        if settable:
            client.set_queue_attributes(QueueUrl=url, Attributes=settable)
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, arn["Attributes"]["QueueArn"]
