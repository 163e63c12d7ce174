"""The work of each step, and how its outcome moves the order.

A step message says "do step S for order O". The pipeline reads O, does S's work
against the venues, and advances O by exactly one state with one conditional
transition that also writes the event, the next step's message and a notify message.
After the commit it publishes the step message and delivers the event to the order's
subscribers itself, the notify message going out only if that fails (outbox.py, the
fast path).

What a failure does depends on its class (errors.py):
- TransientError: count the attempt; retry after 1 s, 2 s, 4 s… (`RetryLater`); after
  `max_attempts` the order fails with the reason.
- BusinessError: the order fails at once.
- InfrastructureError (and anything unexpected): propagate, so the record fails, the
  message returns after its visibility timeout, and in the end lands in the DLQ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

from order_engine import telemetry
from order_engine.dex.router import RouteDecision, Router
from order_engine.dex.venue import SignedTransaction, Submission, Venue
from order_engine.errors import (
    BusinessError,
    RetryLater,
    SlippageExceeded,
    StepError,
    TransientError,
)
from order_engine.messaging import StepMessage
from order_engine.orders import Status, Step, progress
from order_engine.outbox import Outbox, OutboxBatch, transition_messages
from order_engine.records import Order
from order_engine.store import Outcome, Store, TransitionResult

log = logging.getLogger(__name__)


class StepResult(StrEnum):
    ADVANCED = "advanced"  # the order moved on by one state
    FAILED = "failed"  # the order is now failed (business error or attempts exhausted)
    SKIPPED = "skipped"  # duplicate or stale message: nothing to do


@dataclass(frozen=True)
class _Work:
    """What a step's work produced: the transition's event data and column changes."""

    data: Mapping[str, Any]
    changes: Mapping[str, Any]


class Pipeline:
    def __init__(
        self,
        store: Store,
        router: Router,
        outbox: Outbox,
        *,
        max_attempts: int = 3,
        retry_base_seconds: float = 1.0,
        on_watching: Callable[[], object] | None = None,
    ) -> None:
        # Called when a limit order starts watching: make sure the watch is ticking.
        self._on_watching = on_watching
        self._store = store
        self._router = router
        self._outbox = outbox
        self._max_attempts = max_attempts
        self._retry_base_seconds = retry_base_seconds
        self._work: dict[Step, Callable[[Order], _Work]] = {
            Step.ROUTE: self._route,
            Step.BUILD: self._build,
            Step.SUBMIT: self._submit,
            Step.CONFIRM: self._confirm,
        }

    def handle(
        self,
        message: StepMessage,
        *,
        outbox: Outbox | OutboxBatch | None = None,
        orders: Mapping[UUID, Order] | None = None,
    ) -> StepResult:
        """Run one step message. Raises RetryLater, or an infrastructure error.

        `outbox`: where the transition's rows are published after its commit; the
        batch of the SQS batch this message came in (consumers.py), or by default
        the pipeline's own outbox, at once. `orders`: the orders of that batch, read
        together just before (an order missing from them does not exist); without it,
        the message's order is read here. Either read may be overtaken by another
        delivery's commit: the conditional transition settles that, as ever."""
        step = message.step
        out = self._outbox if outbox is None else outbox
        if orders is None:
            order = self._store.get_order(message.order_id)
        else:
            order = orders.get(message.order_id)
        if order is None:
            log.warning("step %s for unknown order %s: dropped", step, message.order_id)
            return StepResult.SKIPPED
        if step is Step.ROUTE and order.limit_price is not None:
            return self._limit_route(order, message.trigger, out)
        if order.status != step.from_status:
            return self._not_ready(order, step)
        try:
            work = self._work[step](order)
        except BusinessError as exc:
            return self._fail(order, step, exc, exc.reason, out, attempts=order.attempts + 1)
        except TransientError as exc:
            return self._retry_or_fail(order, step, exc, out)
        result = self._store.transition(
            order.id,
            step.from_status,
            step.to_status,
            data={**work.data, "attempts": order.attempts + 1},
            changes=work.changes,
            outbox=transition_messages(order.id, step.to_status),
        )
        return self._after_transition(result, out)

    # --- a limit order's route step -------------------------------------------------

    def _limit_route(
        self, order: Order, trigger: Mapping[str, Any] | None, outbox: Outbox | OutboxBatch
    ) -> StepResult:
        """A limit order's first route message starts its watch (pending -> watching);
        the one the price watch sends once the price came (with `trigger`, the quote
        that fired it) routes it like a market order, the limit as the floor."""
        if order.status is Status.PENDING:
            return self._start_watching(order, outbox)
        if order.status is not Status.WATCHING or trigger is None:
            # Past watching (a duplicate trigger), or the first message again: nothing to do.
            log.info("route for limit order %s (now %s): acked", order.id, order.status)
            return StepResult.SKIPPED
        try:
            work = self._route_at_limit(order)
        except BusinessError as exc:
            return self._fail(
                order, Step.ROUTE, exc, exc.reason, outbox, attempts=order.attempts + 1
            )
        except TransientError as exc:
            return self._retry_or_fail(order, Step.ROUTE, exc, outbox)
        if work is None:
            log.info("limit order %s: price gone again before routing; still watching", order.id)
            return StepResult.SKIPPED
        result = self._store.transition(
            order.id,
            Status.WATCHING,
            Status.ROUTING,
            data={**work.data, "trigger": dict(trigger), "attempts": order.attempts + 1},
            changes=work.changes,
            outbox=transition_messages(order.id, Status.ROUTING),
        )
        return self._after_transition(result, outbox)

    def _start_watching(self, order: Order, outbox: Outbox | OutboxBatch) -> StepResult:
        assert order.limit_price is not None and order.expires_at is not None
        result = self._store.transition(
            order.id,
            Status.PENDING,
            Status.WATCHING,
            data={
                "limitPrice": format(order.limit_price, "f"),
                "expiresAt": order.expires_at.isoformat(),
            },
            outbox=transition_messages(order.id, Status.WATCHING),
        )
        outcome = self._after_transition(result, outbox)
        if result.applied and self._on_watching is not None:
            self._on_watching()
        return outcome

    def _route_at_limit(self, order: Order) -> _Work | None:
        """The route decision with the limit as its floor: never less than limitPrice
        per tokenIn, whatever the slippage tolerance allows; None when the quote for
        the order's own amount no longer meets the limit."""
        assert order.limit_price is not None
        decision = self._router.route(
            order.token_in, order.token_out, order.amount, order.slippage_bps
        )
        floor = limit_floor(order.limit_price, order.amount, order.token_out.decimals)
        if decision.quote.amount_out < floor:
            return None
        decision = replace(decision, min_amount_out=max(decision.min_amount_out, floor))
        return _Work(
            data={**decision.to_dict(), "limitFloor": format(floor, "f")},
            changes={"route": decision.to_dict()},
        )

    # --- the work of each step ------------------------------------------------------

    def _route(self, order: Order) -> _Work:
        decision = self._router.route(
            order.token_in, order.token_out, order.amount, order.slippage_bps
        )
        return _Work(data=decision.to_dict(), changes={"route": decision.to_dict()})

    def _build(self, order: Order) -> _Work:
        decision = _decision(order)
        tx = self._router.venue(decision.venue).build(
            str(order.id),
            decision.quote,
            decision.min_amount_out,
            wrap_sol=decision.wrap_sol,
            unwrap_sol=decision.unwrap_sol,
        )
        return _Work(
            data={
                "venue": tx.venue,
                "instructions": list(tx.instructions),
                "minAmountOut": str(tx.min_amount_out),
            },
            changes={"transaction": tx.to_dict(), "tx_signature": tx.signature},
        )

    def _submit(self, order: Order) -> _Work:
        # The signed transaction was fixed at build time: a redelivered submit sends the
        # very same signature again, and the venue dedupes it, so a swap never doubles.
        tx = _transaction(order)
        venue = self._router.venue(tx.venue)
        answer_lost = False
        try:
            submission = venue.submit(tx)
        except TransientError:
            # A timeout loses the answer, not necessarily the transaction (and an earlier
            # attempt may have landed it): ask the chain before counting a failure, or an
            # order whose swap happened could end "failed" without ever being submitted.
            found = _lookup(venue, tx.signature)
            if found is None:
                raise
            submission, answer_lost = found, True
        data = {
            "txSignature": submission.signature,
            "venue": submission.venue,
            "firstSubmission": submission.first_submission,
        }
        if answer_lost:
            data["answerLost"] = True  # the venue's answer never came; the chain had it
        return _Work(data=data, changes={})

    def _confirm(self, order: Order) -> _Work:
        tx = _transaction(order)
        confirmation = self._router.venue(tx.venue).confirm(tx.signature)
        if not confirmation.success:
            raise SlippageExceeded(confirmation.reason or "the swap failed on chain")
        quoted_price = _decision(order).quote.price
        return _Work(
            data={
                "txSignature": tx.signature,
                "executedPrice": str(confirmation.executed_price),
                "amountOut": str(confirmation.amount_out),
                "quotedPrice": str(quoted_price),
            },
            changes={
                "amount_out": confirmation.amount_out,
                "executed_price": confirmation.executed_price,
            },
        )

    # --- outcomes -----------------------------------------------------------------

    def _not_ready(self, order: Order, step: Step) -> StepResult:
        if progress(order.status) < progress(step.from_status):
            # The message overtook the commit it depends on: try again shortly.
            raise RetryLater(f"order is {order.status}, not yet {step.from_status}", 1)
        log.info("step %s for order %s (now %s): duplicate, acked", step, order.id, order.status)
        return StepResult.SKIPPED

    def _retry_or_fail(
        self, order: Order, step: Step, exc: TransientError, outbox: Outbox | OutboxBatch
    ) -> StepResult:
        attempts = self._store.record_failed_attempt(order.id, order.status, exc.reason)
        if attempts is None:  # the order moved on meanwhile: this message is stale
            return StepResult.SKIPPED
        if attempts >= self._max_attempts:
            reason = f"{exc.reason} (gave up after {attempts} attempts)"
            return self._fail(order, step, exc, reason, outbox, attempts=attempts)
        delay = round(self._retry_base_seconds * 2 ** (attempts - 1))
        raise RetryLater(exc.reason, delay)

    def _fail(
        self,
        order: Order,
        step: Step,
        error: StepError,
        reason: str,
        outbox: Outbox | OutboxBatch,
        *,
        attempts: int,
    ) -> StepResult:
        result = self._store.transition(
            order.id,
            order.status,
            Status.FAILED,
            data={"reason": reason, "step": step.value, "attempts": attempts},
            changes={"failure_reason": reason},
            outbox=transition_messages(order.id, Status.FAILED),
        )
        self._after_transition(result, outbox)
        if result.outcome is not Outcome.APPLIED:
            return StepResult.SKIPPED
        telemetry.order_failed(order.id, error.code)
        return StepResult.FAILED

    def _after_transition(
        self, result: TransitionResult, outbox: Outbox | OutboxBatch
    ) -> StepResult:
        if result.outcome is Outcome.APPLIED:
            if result.order is not None:
                telemetry.order_moved(result.order)
            outbox.publish(result.outbox, due=result.due)
            return StepResult.ADVANCED
        if result.outcome is Outcome.OUT_OF_ORDER:
            raise RetryLater("order changed underneath this step", 1)
        # DUPLICATE: another delivery of this message won the race. ILLEGAL and
        # NOT_FOUND cannot come from a well-formed step; acking them ends the loop.
        log.info("transition %s: %s", result.outcome, result.order.id if result.order else "?")
        return StepResult.SKIPPED


def limit_floor(limit_price: Decimal, amount: Decimal, decimals: int) -> Decimal:
    """The least output `amount` may buy at `limit_price`, rounded up to the token's
    precision, so the swap never executes below the limit."""
    return (limit_price * amount).quantize(Decimal(1).scaleb(-decimals), ROUND_CEILING)


def _decision(order: Order) -> RouteDecision:
    # A status past `routing` implies a stored route: the transition wrote them together.
    if order.route is None:
        raise RuntimeError(f"order {order.id} is {order.status} but has no route")
    return RouteDecision.from_dict(order.route)


def _lookup(venue: Venue, signature: str) -> Submission | None:
    """The chain's record of `signature`, or None when it has none or cannot tell."""
    try:
        return venue.lookup(signature)
    except TransientError as exc:
        log.warning("could not look up %s on %s: %s", signature, venue.name, exc.reason)
        return None


def _transaction(order: Order) -> SignedTransaction:
    if order.transaction is None:
        raise RuntimeError(f"order {order.id} is {order.status} but has no transaction")
    return SignedTransaction.from_dict(order.transaction)
