"""What the fault scenarios are built from.

- `FaultStack`: the stack of tests/support/handler_stack.py (the real functions/
  handlers over real PostgreSQL and SQS on a moto server) on a database of the fault
  suite's own, with queues whose visibility timeout is one second (a failed record is
  back at once), the orders it placed, and explicit sweepers.
- `DeliveryLog`: records every step delivery (what it returned, how many transitions it
  applied, how many swaps it made) for the checker's I4.
- `ProcessCrash` and `crash_once`: the process dies at a chosen point.

Servers a scenario may break (a database, PostgreSQL itself, moto, `order-engine up`)
are in servers.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from order_engine.dex.ledger import PostgresLedger
from order_engine.dex.simulation import Fault, simulated_venues
from order_engine.errors import RetryLater
from order_engine.orders import TERMINAL, Step
from order_engine.pipeline import Pipeline
from order_engine.store import Store
from order_engine.sweeper import Sweeper
from order_engine.wiring import engine, reset_engine
from tests.faults.checker import Checker, Delivery
from tests.support.aws import free_port
from tests.support.handler_stack import TOPICS, Stack

VISIBILITY_SECONDS = 1
MAX_RECEIVES = 5


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

        def recording_handle(pipeline: Pipeline, message: Any, **options: Any) -> Any:
            current = log._local.current = _Current()
            result = "error"
            try:
                outcome = handle(pipeline, message, **options)
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
                            str(message.order_id),
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

    seed: int = 0
    log: DeliveryLog = field(default_factory=DeliveryLog)
    accepted: list[str] = field(default_factory=list)

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
        self.engine.use_venues(
            lambda settings, ledger: simulated_venues(settings.dex, ledger, faults=faults)
        )

    # --- placing orders -----------------------------------------------------------

    def place(self, order: dict[str, Any] | None = None) -> str:
        """POST an order; it must be accepted (202). Remembered in `accepted`."""
        self.accepted.append(super().place(order))
        return self.accepted[-1]

    # --- moving things along ------------------------------------------------------

    def new_sweeper(self, *, grace: float = 1.0, stuck: float = 3.0) -> Sweeper:
        """The engine's sweeper with these thresholds (the process's own has thresholds
        of a month, so that nothing sweeps behind a scenario's back)."""
        return Sweeper(
            self.engine.outbox_store,
            self.engine.outbox,
            outbox_grace_seconds=grace,
            stuck_after_seconds=stuck,
        )

    def drain_once(self, topics: list[str] | None = None) -> None:
        for topic in topics or TOPICS:
            self.deliver(topic)

    def settle(
        self,
        order_ids: list[str] | None = None,
        *,
        timeout: float = 30.0,
        every_order_in_database: bool = False,
    ) -> list[str]:
        """Deliver every queue and sweep until the orders (default: every accepted
        one) are terminal with nothing unsent; the ids that did not get there."""
        sweeper = self.new_sweeper()

        def drive() -> None:
            self.drain_once()
            sweeper.sweep()
            time.sleep(0.02)

        return self.checker().settle(
            order_ids or self.accepted,
            drive=drive,
            timeout=timeout,
            every_order_in_database=every_order_in_database,
        )

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

    def check(
        self,
        order_ids: list[str] | None = None,
        *,
        every_order_in_database: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Settle, then check every accepted order (or `order_ids`) and assert."""
        ids = order_ids or self.accepted
        self.settle(ids, every_order_in_database=every_order_in_database)
        report = self.checker().check(
            ids,
            deliveries=self.log.deliveries,
            every_order_in_database=every_order_in_database,
            **kwargs,
        )
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
