"""SQS unavailable to the functions: orders are still accepted, and flow once it is back."""

from __future__ import annotations

from order_engine.orders import Status, Step
from tests.faults.harness import FaultStack
from tests.support.outbox import unsent_topics


def unsent(stack: FaultStack, order_id: str) -> list[str]:
    return unsent_topics(stack.database_url, order_id)


def depth(stack: FaultStack, topic: str) -> int:
    attributes = stack.sqs.get_queue_attributes(
        QueueUrl=stack.queue_urls[topic],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def test_orders_accepted_while_sqs_is_unreachable_flow_once_it_is_back(
    stack: FaultStack,
) -> None:
    with stack.sqs_unreachable():
        orders = [stack.place() for _ in range(4)]  # every POST still answers 202
        # The sweeper cannot publish either; the rows wait, nothing is lost.
        assert stack.new_sweeper(grace=0).relay_outbox() == 0
        assert all(unsent(stack, order_id) == ["route"] for order_id in orders)
    assert depth(stack, "route") == 0
    for order_id in orders:
        order = stack.engine.store.get_order(order_id)
        assert order is not None and order.status is Status.PENDING

    stack.check()  # SQS is back: the sweeper relays the route messages, the orders run


def test_a_worker_that_cannot_publish_leaves_the_next_step_to_the_sweeper(
    stack: FaultStack,
) -> None:
    """The route step commits, then its publish fails: the step is done (and its
    message acknowledged); the build message waits in the outbox for the relay."""
    order_id = stack.place()
    messages = stack.receive_all("route", 1)
    with stack.sqs_unreachable():
        answer = stack.deliver("route", messages)
    assert answer["batchItemFailures"] == []
    # The notification needed no SQS: the worker delivered it itself (to no one here).
    assert unsent(stack, order_id) == ["build"]

    stack.check()


def test_a_deleted_notify_queue_holds_back_notifications_only(stack: FaultStack) -> None:
    """The notify queue disappears (deleted by mistake, mid-redeploy): the steps go on,
    and the notifications that need the queue (the workers could not deliver them
    themselves: their subscriber is throttled) wait in the outbox until it is back."""
    stack.sqs.delete_queue(QueueUrl=stack.queue_urls["notify"])
    orders = [stack.place() for _ in range(3)]
    for order_id in orders:
        subscriber = stack.open_connection(f"throttled-{order_id}")
        assert stack.engine.subscriptions.subscribe(subscriber, order_id)
        stack.management.throttled.add(subscriber)

    stack.run_until_terminal(orders, topics=[step.value for step in Step])

    for order_id in orders:
        order = stack.engine.store.get_order(order_id)
        assert order is not None and order.status in {Status.CONFIRMED, Status.FAILED}
        assert set(unsent(stack, order_id)) == {"notify"}

    name = stack.queue_urls["notify"].rsplit("/", 1)[-1]
    assert stack.sqs.create_queue(QueueName=name)["QueueUrl"] == stack.queue_urls["notify"]
    stack.management.throttled.clear()
    stack.check()  # the relay sends the notifications
