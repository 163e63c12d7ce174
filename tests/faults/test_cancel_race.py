"""A cancel racing the pipeline ends in exactly one outcome: cancelled with no swap, or
the cancel refused and the order executed (or failed). Never both, never neither.

Each order of a seed is cancelled at a moment the seed picks: before its route step,
at the very instant its route or build step commits (a barrier holds the step's
conditional UPDATE and the cancel's until both are there, then lets them race), or
after its transaction is built. The checker then judges every history.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import pytest

from order_engine.orders import CANCELLABLE, TERMINAL, Status, Step
from order_engine.store import Store
from tests.faults.harness import FaultStack
from tests.faults.report import Report

ORDERS_PER_SEED = 8
MOMENTS = ("before route", "racing route", "racing build", "after build")


class RaceGate:
    """Holds the step's transition and the cancel of one order until both are there."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, rng: random.Random) -> None:
        self.order_id: uuid.UUID | None = None
        self.barrier = threading.Barrier(2, timeout=5)
        self._rng = rng
        transition, cancel_ = Store.transition, Store.cancel
        gate = self

        def gated_transition(store: Store, order_id: uuid.UUID, *args: Any, **kw: Any) -> Any:
            gate.wait(order_id)
            return transition(store, order_id, *args, **kw)

        def gated_cancel(store: Store, order_id: uuid.UUID, *args: Any, **kw: Any) -> Any:
            gate.wait(order_id)
            return cancel_(store, order_id, *args, **kw)

        monkeypatch.setattr(Store, "transition", gated_transition)
        monkeypatch.setattr(Store, "cancel", gated_cancel)

    def wait(self, order_id: uuid.UUID) -> None:
        if order_id != self.order_id:
            return
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:  # the step retried instead: no race this time
            return
        time.sleep(self._rng.random() * 0.003)  # which of the two goes first is the seed's

    def race(self, order_id: str, run_step: Any, stack: FaultStack) -> tuple[int, Any]:
        self.order_id = uuid.UUID(order_id)
        self.barrier.reset()
        step = threading.Thread(target=run_step)
        step.start()
        answer = stack.cancel(order_id)
        step.join(timeout=20)
        assert not step.is_alive(), "the step never finished"
        self.order_id = None
        return answer


@pytest.mark.pinned_seeds(1, 5)  # a cancel racing route was refused as "routing"
def test_cancel_racing_routing_and_building_ends_each_order_in_exactly_one_outcome(
    stack: FaultStack, fault_seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(fault_seed)
    gate = RaceGate(monkeypatch, rng)
    answers: dict[str, tuple[str, int, dict[str, Any]]] = {}
    for _ in range(ORDERS_PER_SEED):
        order_id = stack.place()
        moment = rng.choice(MOMENTS)
        if moment == "before route":
            answers[order_id] = (moment, *stack.cancel(order_id))
            continue
        if moment != "racing route":
            stack.deliver(Step.ROUTE.value)
        if moment == "after build":
            stack.deliver(Step.BUILD.value)
            answers[order_id] = (moment, *stack.cancel(order_id))
            continue
        step = Step.ROUTE if moment == "racing route" else Step.BUILD
        answers[order_id] = (moment, *gate.race(order_id, lambda s=step: stack.deliver(s), stack))

    report: Report = stack.check()

    assert report.orders == ORDERS_PER_SEED
    for order_id, (moment, status, body) in answers.items():
        order = stack.engine.store.get_order(uuid.UUID(order_id))
        assert order is not None and order.status in TERMINAL
        outcome = f"{order_id} ({moment}): answered {status} {body}, ended {order.status}"
        if status == 200:
            assert order.status is Status.CANCELLED, outcome
            assert stack.swaps(order_id) == 0, outcome
        else:
            assert status == 409, outcome
            assert Status(body["error"]["status"]) not in CANCELLABLE, outcome
            assert order.status in {Status.CONFIRMED, Status.FAILED}, outcome
        if moment == "before route":
            assert status == 200, outcome
        if moment == "after build":
            assert (status, body["error"]["status"]) == (409, "building"), outcome
