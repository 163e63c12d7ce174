"""What the fault scenarios are built from.

- `FaultStack`: the real functions/ handlers over real PostgreSQL (a database of the
  fault suite's own) and real SQS (a moto server), as in tests/integration/handlers,
  with queues whose visibility timeout is one second (a failed record is back at once),
  a way to place orders over the HTTP handler, and explicit sweepers.
- `DeliveryLog`: records every step delivery (what it returned, how many transitions it
  applied, how many swaps it made) for the checker's I4.
- `ProcessCrash` and `crash_once`: the process dies at a chosen point.
- `OwnedPostgres`: a PostgreSQL server the test owns, so it may stop and restart it.
- `UpProcess`: `order-engine up` as a subprocess, to be killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import psycopg
import pytest
from chalice.test import Client
from psycopg import sql

from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts
from order_engine.dex.router import Router
from order_engine.dex.simulation import Fault, simulated_venues
from order_engine.migrate import migrate
from order_engine.orders import TERMINAL, Step
from order_engine.pipeline import Pipeline, RetryLater
from order_engine.store import PostgresLedger, Store
from order_engine.sweeper import Sweeper
from order_engine.wiring import engine, reset_engine
from order_engine_cli.client import OrderClient
from tests.faults.checker import Checker, Delivery
from tests.integration.handlers.conftest import TOPICS, Stack, queue_environment
from tests.support.aws import FAKE_CREDENTIALS, create_queues, free_port

ROOT = Path(__file__).resolve().parents[2]
VISIBILITY_SECONDS = 1
MAX_RECEIVES = 5
# Wide tolerance, so that orders fail on purpose only (the simulation's execution drift
# still fails a few percent at the default 100 bps, which the checker takes as it comes).
ORDER = {
    "type": "market",
    "tokenIn": "SOL",
    "tokenOut": "USDC",
    "amount": "1.25",
    "slippageBps": 500,
}


class ProcessCrash(BaseException):
    """The process dies here (killed Lambda, lost container). A BaseException, so no
    `except Exception` in the engine or in Powertools gets to handle it: nothing after
    this point runs, and the event source mapping deletes nothing."""

    def __init__(self, where: str, *, after_commit: bool) -> None:
        super().__init__(where)
        self.after_commit = after_commit


@contextmanager
def crash_once(
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
    *,
    after_commit: bool,
    when: Callable[..., bool] = lambda *args, **kwargs: True,
    before: bool = True,
) -> Iterator[list[str]]:
    """Make `owner.name` crash the process the first time `when(*args)` holds: before
    it runs (`before`) or right after it returned. Yields a list that records where the
    crash happened (empty if it never did)."""
    original = getattr(owner, name)
    crashed: list[str] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if crashed or not when(*args, **kwargs):
            return original(*args, **kwargs)
        where = f"{'before' if before else 'after'} {owner.__name__}.{name}"
        if before:
            crashed.append(where)
            raise ProcessCrash(where, after_commit=after_commit)
        original(*args, **kwargs)
        crashed.append(where)
        raise ProcessCrash(where, after_commit=after_commit)

    monkeypatch.setattr(owner, name, wrapper)
    try:
        yield crashed
    finally:
        monkeypatch.setattr(owner, name, original)


@dataclass
class _Current:
    applied: int = 0
    swaps: int = 0


class DeliveryLog:
    """Every step delivery this process handles, with what it changed."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> DeliveryLog:
        log = self
        handle, transition, record = Pipeline.handle, Store.transition, PostgresLedger.record

        def recording_handle(pipeline: Pipeline, message: Any) -> Any:
            current = log._local.current = _Current()
            result = "error"
            try:
                outcome = handle(pipeline, message)
                result = outcome.value
                return outcome
            except RetryLater:
                result = "retry"
                raise
            except ProcessCrash:
                result = "crashed"
                raise
            finally:
                log._local.current = None
                with log._lock:
                    log.deliveries.append(
                        Delivery(
                            message.order_id,
                            message.step.value,
                            result,
                            current.applied,
                            current.swaps,
                        )
                    )

        def recording_transition(store: Store, *args: Any, **kwargs: Any) -> Any:
            result = transition(store, *args, **kwargs)
            current = getattr(log._local, "current", None)
            if result.applied and current is not None:
                current.applied += 1
            return result

        def recording_record(ledger: PostgresLedger, *args: Any, **kwargs: Any) -> Any:
            entry = record(ledger, *args, **kwargs)
            current = getattr(log._local, "current", None)
            if entry.first and current is not None:
                current.swaps += 1
            return entry

        monkeypatch.setattr(Pipeline, "handle", recording_handle)
        monkeypatch.setattr(Store, "transition", recording_transition)
        monkeypatch.setattr(PostgresLedger, "record", recording_record)
        return self

    def of(self, order_id: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.order_id == order_id]

    def duplicates(self) -> int:
        with self._lock:
            return sum(d.duplicate for d in self.deliveries)


@dataclass
class FaultStack(Stack):
    """The handler-level stack of the fault suite (see the module docstring)."""

    database_url: str = ""
    seed: int = 0
    prefix: str = ""
    dlq_urls: dict[str, str] = field(default_factory=dict)
    log: DeliveryLog = field(default_factory=DeliveryLog)
    accepted: list[str] = field(default_factory=list)

    def use_new_queues(self) -> None:
        """Brand-new queues (and DLQs) named `<prefix>-<topic>`, as a SAM stack names
        them, so `order-engine dlq --stack-name <prefix>` finds them."""
        self.prefix = f"f{uuid.uuid4().hex[:8]}"
        urls = create_queues(
            self.sqs,
            [f"{self.prefix}-{topic}" for topic in TOPICS],
            max_receive_count=MAX_RECEIVES,
            visibility_timeout=VISIBILITY_SECONDS,
        )
        self.queue_urls = {topic: urls[f"{self.prefix}-{topic}"] for topic in TOPICS}
        self.dlq_urls = {f"{topic}-dlq": urls[f"{self.prefix}-{topic}-dlq"] for topic in TOPICS}
        os.environ.update(queue_environment(self.queue_urls))
        reset_engine()

    # --- what the stack runs on -------------------------------------------------

    @contextmanager
    def use_database(self, url: str) -> Iterator[None]:
        """Run the handlers on another (migrated) database for the block, with a key
        of its own there."""
        saved = self.database_url, self.issued_key
        os.environ["DATABASE_URL"] = url
        reset_engine()
        self.database_url = url
        self.issued_key = engine().accounts.create_key(f"faults-{uuid.uuid4().hex[:8]}")
        try:
            yield
        finally:
            self.database_url, self.issued_key = saved
            os.environ["DATABASE_URL"] = self.database_url
            reset_engine()

    @contextmanager
    def sqs_unreachable(self) -> Iterator[None]:
        """The functions' SQS endpoint refuses connections for the block (the test's
        own client, playing Lambda's pollers, still reaches the queues)."""
        saved = os.environ["AWS_ENDPOINT_URL_SQS"]
        os.environ["AWS_ENDPOINT_URL_SQS"] = f"http://127.0.0.1:{free_port()}"
        reset_engine()
        try:
            yield
        finally:
            os.environ["AWS_ENDPOINT_URL_SQS"] = saved
            reset_engine()

    def use_faults(self, **faults: Fault) -> None:
        """Replace this process's venues by ones with these faults (keyed by venue)."""
        eng = self.engine
        eng.__dict__.pop("pipeline", None)
        venues = simulated_venues(eng.settings.dex, PostgresLedger(eng.store), faults=faults)
        eng.__dict__["router"] = Router(venues, quote_timeout=eng.settings.dex.quote_timeout)

    # --- placing orders -----------------------------------------------------------

    def post(self, order: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        with Client(self.api.app) as client:
            response = client.http.post(
                "/api/orders/execute",
                headers={
                    "Content-Type": "application/json",
                    "Idempotency-Key": str(uuid.uuid4()),
                    **self.auth,
                },
                body=json.dumps(order or ORDER),
            )
        return response.status_code, json.loads(response.body or b"{}")

    def place(self, order: dict[str, Any] | None = None) -> str:
        """POST an order; it must be accepted (202). Remembered in `accepted`."""
        status, body = self.post(order)
        assert status == 202, (status, body)
        self.accepted.append(str(body["orderId"]))
        return self.accepted[-1]

    # --- moving things along ------------------------------------------------------

    def new_sweeper(self, *, grace: float = 1.0, stuck: float = 3.0) -> Sweeper:
        """The engine's sweeper with these thresholds (the process's own has thresholds
        of a month, so that nothing sweeps behind a scenario's back)."""
        return Sweeper(
            self.engine.store,
            self.engine.publisher,
            outbox_grace_seconds=grace,
            stuck_after_seconds=stuck,
        )

    def drain_once(self, topics: list[str] | None = None) -> None:
        for topic in topics or TOPICS:
            self.deliver(topic)

    def settle(self, order_ids: list[str] | None = None, *, timeout: float = 30.0) -> list[str]:
        """Deliver every queue and sweep until the orders (default: every accepted
        one) are terminal with nothing unsent; the ids that did not get there."""
        sweeper = self.new_sweeper()

        def drive() -> None:
            self.drain_once()
            sweeper.sweep()
            time.sleep(0.02)

        return self.checker().settle(order_ids or self.accepted, drive=drive, timeout=timeout)

    def run_until_terminal(
        self, order_ids: list[str], *, topics: list[str] | None = None, timeout: float = 20.0
    ) -> None:
        """Deliver (`topics`, default all) and sweep until the orders are terminal,
        whatever is left in their outbox."""
        sweeper = self.new_sweeper()
        deadline = time.monotonic() + timeout
        while True:
            orders = [self.engine.store.get_order(order_id) for order_id in order_ids]
            if all(order is not None and order.status in TERMINAL for order in orders):
                return
            assert time.monotonic() < deadline, [o.status if o else None for o in orders]
            self.drain_once(topics)
            sweeper.sweep()
            time.sleep(0.02)

    def checker(self) -> Checker:
        return Checker(self.database_url, sqs=self.sqs, dlq_urls=self.dlq_urls, seed=self.seed)

    def check(self, order_ids: list[str] | None = None, **kwargs: Any) -> Any:
        """Settle, then check every accepted order (or `order_ids`) and assert."""
        ids = order_ids or self.accepted
        self.settle(ids)
        report = self.checker().check(ids, deliveries=self.log.deliveries, **kwargs)
        return report.assert_ok()

    def step_body(self, order_id: str, step: Step | str) -> str:
        return json.dumps({"v": 1, "orderId": order_id, "step": str(step)})

    def send(self, topic: str, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue_urls[topic], MessageBody=body)

    def receive_all(self, topic: str, count: int, *, timeout: float = 5.0) -> list[dict[str, Any]]:
        """At least `count` messages of `topic`, received (and so hidden) together."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(messages) < count:
            assert time.monotonic() < deadline, f"{len(messages)} of {count} on {topic}"
            messages += self.receive(topic)
        return messages

    def release(self, topic: str, messages: list[dict[str, Any]]) -> None:
        """Make received messages visible again at once (their visibility timeout is
        over, as after a crash)."""
        for message in messages:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_urls[topic],
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=0,
            )


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
    with AccountStore(database_url, max_size=1) as store:
        return Accounts(store).create_key(f"{name}-{uuid.uuid4().hex[:8]}").key


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
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


class UpProcess:
    """`order-engine up` as a user runs it, against an SQS and a database that outlive
    it, so it can be killed (SIGKILL) and started again."""

    def __init__(
        self,
        database_url: str,
        sqs_url: str,
        workdir: Path,
        api_key: str,
        *,
        latency_scale: str = "1",
        env: dict[str, str] | None = None,
    ) -> None:
        self.http_port, self.ws_port = free_port(), free_port()
        self.command = [
            str(Path(sys.executable).parent / "order-engine"),
            "up",
            "--sqs",
            sqs_url,
            "--database-url",
            database_url,
            "--http-port",
            str(self.http_port),
            "--ws-port",
            str(self.ws_port),
            "--latency-scale",
            latency_scale,
            "--schedule-speed",
            "60",
            "--dev-key-file",
            str(workdir / "dev-api-key"),
        ]
        self.env = {**os.environ, **FAKE_CREDENTIALS, **(env or {})}
        self.database_url, self.sqs_url = database_url, sqs_url
        self.log = workdir / "up.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.client = OrderClient(f"http://127.0.0.1:{self.http_port}", timeout=5, api_key=api_key)

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=log, cwd=ROOT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.tail()
            try:
                if self.client.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"order-engine up did not become healthy:\n{self.tail()}")

    def kill(self) -> int:
        """SIGKILL: no handler runs, nothing is released, nothing is flushed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=30)

    def interrupt(self) -> int:
        assert self.process is not None
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)

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

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
