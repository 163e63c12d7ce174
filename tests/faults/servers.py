"""Servers and processes a fault scenario owns, so it may break them.

- `create_database` / `drop_database`: a migrated database on the session's server;
- `OwnedPostgres`: a PostgreSQL server of the test's own, to crash and restart;
- `moto_process`: a moto server in a process of its own (a clean SQS backend);
- `UpProcess`: `order-engine up` as a subprocess (the CLI's starter), to be killed
  with SIGKILL.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import boto3
import psycopg
from psycopg import sql

from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts
from order_engine.database import Database
from order_engine.migrate import migrate
from order_engine_cli.client import OrderClient
from order_engine_cli.up_process import UpProcess as CliUpProcess
from tests.faults.checker import Checker
from tests.support.aws import FAKE_CREDENTIALS, free_port

ROOT = Path(__file__).resolve().parents[2]


# --- databases ---------------------------------------------------------------------


def create_database(server_url: str, prefix: str) -> str:
    """A new, migrated database on the server of `server_url`."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    migrate(url)
    return url


def drop_database(url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    admin_url = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )


def new_api_key(database_url: str, name: str = "faults") -> str:
    with Database(database_url, max_size=1) as database:
        return Accounts(AccountStore(database)).create_key(f"{name}-{uuid.uuid4().hex[:8]}").key


class OwnedPostgres:
    """A PostgreSQL server of this test's own (pgserver's binaries, a temporary data
    directory), which it may crash and restart: never the session's shared server,
    never the machine's."""

    def __init__(self, data_dir: Path) -> None:
        import pgserver

        self._server = pgserver.get_server(data_dir, cleanup_mode="delete")
        self.url = self._server.get_uri()
        self._socket_dir = parse_qs(urlparse(self.url).query)["host"][0]

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(list(args), pgdata=self._server.pgdata, user=self._server.system_user, timeout=60)

    def crash(self) -> None:
        """Stop at once, as a power cut would (recovery runs at the next start)."""
        self._pg_ctl("-w", "-m", "immediate", "stop")

    def start(self) -> None:
        self._pg_ctl(
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self._socket_dir}",
            "-l",
            str(self._server.log),
            "start",
        )

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self._pg_ctl("-w", "-m", "fast", "stop")
        self._server.cleanup()


# --- `order-engine up` as a subprocess ---------------------------------------------


@contextmanager
def moto_process() -> Iterator[str]:
    """A moto server in a process of its own; yields its endpoint URL.

    Not tests.support.aws.moto_server: the moto servers of one process share one
    backend, so queues named `local-…` by an earlier test (with its leftover messages)
    would still be there, and this test's `up` would consume them, and they its."""
    with moto_server_process() as (url, _):
        yield url


@contextmanager
def moto_server_process() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """moto_process, with the process too, for a test that stops it (SIGSTOP)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "moto server exited"
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310
                    break
            except OSError:
                assert time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.1)
        yield url, process
    finally:
        process.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        process.terminate()
        process.wait(timeout=10)


class UpProcess(CliUpProcess):
    """`order-engine up` as a user runs it (the CLI's own starter), against an SQS and a
    database that outlive it, so it can be killed (SIGKILL) and started again."""

    def __init__(
        self,
        database_url: str,
        sqs_url: str,
        workdir: Path,
        api_key: str,
        *,
        latency_scale: str = "1",
        env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            [
                "--sqs",
                sqs_url,
                "--database-url",
                database_url,
                "--latency-scale",
                latency_scale,
                "--schedule-speed",
                "60",
                "--dev-key-file",
                str(workdir / "dev-api-key"),
                *extra_args,
            ],
            log_dir=workdir,
            env={**FAKE_CREDENTIALS, **(env or {})},
        )
        self.database_url, self.sqs_url = database_url, sqs_url
        self.client = OrderClient(self.api_url, timeout=5, api_key=api_key)

    def checker(self, seed: int | None = None) -> Checker:
        """A checker of this stack's database and dead-letter queues (stack `local`)."""
        sqs = boto3.client(
            "sqs",
            endpoint_url=self.sqs_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        urls = sqs.list_queues(QueueNamePrefix="local-").get("QueueUrls", [])
        dlqs = {url.rsplit("/", 1)[-1]: url for url in urls if url.endswith("-dlq")}
        return Checker(self.database_url, sqs=sqs, dlq_urls=dlqs, seed=seed)
