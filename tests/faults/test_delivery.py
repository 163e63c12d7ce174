"""At-least-once delivery: duplicates, reordering and two consumers at once change
nothing beyond the one transition each step makes.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from order_engine.orders import HAPPY_PATH, Status, Step
from order_engine.store import Store
from tests.faults.harness import FaultStack
from tests.support.handler_stack import lambda_record


def history(stack: FaultStack, order_id: str) -> list[Status]:
    return [event.to_status for event in stack.engine.store.get_events(order_id)]


def test_every_step_delivered_three_times_in_one_batch_applies_once(
    stack: FaultStack,
) -> None:
    """The same envelope twice as two SQS messages, and one message listed twice in a
    batch (as a retried receive can do): one transition, every record acknowledged."""
    order_id = stack.place()
    for step in Step:
        stack.send(step.value, stack.step_body(order_id, step))  # a second copy
        messages = stack.receive_all(step.value, 2)
        batch = [*messages, messages[0]]

        answer = stack.deliver(step.value, batch)

        assert answer["batchItemFailures"] == []
        assert history(stack, order_id) == list(HAPPY_PATH[: HAPPY_PATH.index(step.to_status) + 1])
        results = sorted(d.result for d in stack.log.of(order_id) if d.step == step.value)
        assert results in (["advanced", "skipped", "skipped"], ["failed", "skipped", "skipped"])
        if results[0] == "failed":  # the simulation's slippage: the order ends here
            break
    report = stack.check()
    assert report.duplicates >= 2


def test_messages_delivered_in_reverse_order_are_retried_and_end_the_same(
    stack: FaultStack, fault_seed: int
) -> None:
    """Confirm, submit and build arrive before route: each early one is refused (its
    record fails, to come back), nothing changes, and the order ends as it would have."""
    rng = random.Random(fault_seed)
    orders = [stack.place() for _ in range(3)]
    for order_id in orders:
        for step in (Step.CONFIRM, Step.SUBMIT, Step.BUILD):
            stack.send(step.value, stack.step_body(order_id, step))
    for step in (Step.CONFIRM, Step.SUBMIT, Step.BUILD):
        messages = stack.receive_all(step.value, len(orders))
        rng.shuffle(messages)
        answer = stack.deliver(step.value, messages)
        assert len(answer["batchItemFailures"]) == len(orders)  # all early: retried
    for order_id in orders:
        assert history(stack, order_id) == [Status.PENDING]
        assert {d.result for d in stack.log.of(order_id)} == {"retry"}

    report = stack.check()
    for order_id in orders:
        path = history(stack, order_id)
        assert path == list(HAPPY_PATH) or path[-1] is Status.FAILED
    assert report.retries >= 3 * len(orders)


@pytest.mark.parametrize("step", list(Step), ids=lambda step: step.value)
def test_two_consumers_on_one_message_make_one_transition_without_deadlock(
    stack: FaultStack, monkeypatch: pytest.MonkeyPatch, step: Step
) -> None:
    """Two invocations run the same message at the same moment (a barrier holds both
    at the conditional UPDATE until both are there): one applies, the other finds the
    order moved on and acknowledges. Neither waits on the other forever."""
    order_id = stack.place()
    for earlier in list(Step)[: list(Step).index(step)]:
        stack.deliver(earlier.value)
    assert history(stack, order_id)[-1] is step.from_status
    message = stack.receive_all(step.value, 1)[0]
    event = {"Records": [lambda_record(message, f"arn:aws:sqs:us-east-1:123456789012:{step}")]}

    barrier = threading.Barrier(2, timeout=5)
    transition = Store.transition

    def both_at_once(store: Store, *args: Any, **kwargs: Any) -> Any:
        barrier.wait()
        return transition(store, *args, **kwargs)

    monkeypatch.setattr(Store, "transition", both_at_once)
    answers: list[dict[str, Any]] = []
    handler = stack.handler_for(step.value)
    threads = [
        threading.Thread(target=lambda: answers.append(handler(event, None))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    monkeypatch.setattr(Store, "transition", transition)

    assert not any(thread.is_alive() for thread in threads), "deadlock"
    assert [answer["batchItemFailures"] for answer in answers] == [[], []]
    results = sorted(d.result for d in stack.log.of(order_id) if d.step == step.value)
    assert results in (["advanced", "skipped"], ["failed", "skipped"])
    assert len(history(stack, order_id)) == list(Step).index(step) + 2
    stack.sqs.delete_message(
        QueueUrl=stack.queue_urls[step.value], ReceiptHandle=message["ReceiptHandle"]
    )
    stack.check()
