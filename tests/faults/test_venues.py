"""Venues that time out: the router falls back on the other one; when both are gone
the order fails after three attempts with the reason, having swapped nothing; a
submission whose answer is lost is never taken for one that did not happen.
"""

from __future__ import annotations

from order_engine.dex.simulation import Fault, Script
from order_engine.orders import Status
from tests.faults.harness import FaultStack


def timing_out() -> Fault:
    """Every call waits out its timeout and gets no answer."""
    timeout = Script.always("timeout")
    return Fault(quote=timeout, build=timeout, submit=timeout, confirm=timeout)


def test_a_venue_that_always_times_out_is_passed_over_for_the_other(stack: FaultStack) -> None:
    stack.use_faults(raydium=timing_out())
    orders = [stack.place() for _ in range(3)]

    report = stack.check()

    assert report.statuses["confirmed"] == len(orders)
    for order_id in orders:
        order = stack.engine.store.get_order(order_id)
        assert order is not None and order.route is not None
        assert order.route["venue"] == "meteora"
        assert "raydium timed out" in order.route["reason"]


def test_both_venues_timing_out_fail_the_order_after_three_attempts_with_the_reason(
    stack: FaultStack,
) -> None:
    stack.use_faults(raydium=timing_out(), meteora=timing_out())
    order_id = stack.place()

    report = stack.check()

    assert report.statuses == {"failed": 1}
    order = stack.engine.store.get_order(order_id)
    assert order is not None and order.status is Status.FAILED
    assert order.failure_reason and "3 attempts" in order.failure_reason
    assert "timed out" in order.failure_reason
    routes = [d for d in stack.log.of(order_id) if d.step == "route"]
    assert [d.result for d in routes] == ["retry", "retry", "failed"]
    assert sum(d.swaps for d in stack.log.deliveries) == 0


def test_a_submission_whose_answer_is_lost_every_time_is_not_reported_as_never_sent(
    stack: FaultStack,
) -> None:
    """The venue executes the transaction but the answer never arrives, however often
    it is re-sent. The checker's I3 holds the order to the venue's ledger: a swap that
    happened must appear in the order's history, never as "failed before submission"."""
    lost_answer = Fault(submit=Script.always("timeout"))
    stack.use_faults(raydium=lost_answer, meteora=lost_answer)
    order_id = stack.place()

    report = stack.check()

    submits = [d for d in stack.log.of(order_id) if d.step == "submit"]
    assert sum(d.swaps for d in submits) == 1  # landed at the first attempt, once
    # The worker asked the chain when the answer did not come: the swap is followed
    # through to its confirmation instead of being reported as never sent.
    assert report.statuses == {"confirmed": 1}
    submitted = stack.engine.store.get_events(order_id)[3]
    assert submitted.to_status is Status.SUBMITTED and submitted.data["answerLost"] is True
