"""The step workers deliver each event to the order's subscribers themselves, right
after their commit; the notify queue carries only what that missed. Over the real
handlers, real PostgreSQL and real SQS (moto server)."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from order_engine.orders import Step
from tests.integration.handlers.conftest import HAPPY
from tests.support.handler_stack import Stack


def unsent_notify_rows(stack: Stack, order_id: str) -> int:
    with stack.engine.database.statement() as cur:
        cur.execute(
            "SELECT count(*) AS n FROM outbox"
            " WHERE order_id = %s AND topic = 'notify' AND sent_at IS NULL",
            (order_id,),
        )
        row = cur.fetchone()
    assert row is not None
    return int(row["n"])


def test_a_subscribed_orders_events_reach_it_with_no_notify_message(fresh: Stack) -> None:
    watched, unwatched = fresh.place(), fresh.place()
    connection = fresh.open_connection(f"c-{uuid.uuid4().hex[:8]}")
    assert fresh.engine.subscriptions.subscribe(connection, watched)

    for step in Step:
        fresh.deliver(step.value)
        # Each event is at the client as soon as its step's handler has answered, with
        # no notify message for either order: nobody watches the other one at all.
        assert fresh.receive("notify") == []
        assert fresh.management.messages(connection)[-1]["status"] == step.to_status.value

    received = fresh.management.messages(connection)
    assert received[0]["type"] == "snapshot" and received[0]["status"] == "routing"
    seqs = [e["seq"] for e in received[0]["events"]] + [m["seq"] for m in received[1:]]
    assert seqs == [1, 2, 3, 4, 5]
    assert [m["status"] for m in received[1:]] == [s.value for s in HAPPY[2:]]
    assert fresh.pending() == 0
    # The notify rows are marked sent: the sweeper has nothing left to relay.
    assert unsent_notify_rows(fresh, watched) == unsent_notify_rows(fresh, unwatched) == 0


def test_a_failed_direct_delivery_falls_back_to_the_notify_queue(fresh: Stack) -> None:
    """One order's subscriber is throttled: its worker cannot deliver, so that order's
    notification goes out on the queue, and the notifier delivers it once the
    subscriber can take it. The other order in the same batch needs no message."""
    throttled_order, fine_order = fresh.place(), fresh.place()
    throttled = fresh.open_connection(f"a-throttled-{uuid.uuid4().hex[:8]}")
    fine = fresh.open_connection(f"b-fine-{uuid.uuid4().hex[:8]}")
    assert fresh.engine.subscriptions.subscribe(throttled, throttled_order)
    assert fresh.engine.subscriptions.subscribe(fine, fine_order)
    fresh.management.throttled.add(throttled)

    answer = fresh.deliver("route")

    assert answer["batchItemFailures"] == []  # the order moved on all the same
    notes = fresh.receive("notify")
    assert [throttled_order in m["Body"] for m in notes] == [True]
    assert fresh.management.messages(throttled) == []
    assert fresh.management.messages(fine)[0]["status"] == "routing"

    fresh.management.throttled.discard(throttled)
    assert fresh.deliver("notify", notes)["batchItemFailures"] == []

    snapshot = fresh.management.messages(throttled)[0]
    assert snapshot["type"] == "snapshot" and snapshot["status"] == "routing"


def test_a_followed_order_sends_four_sqs_messages_not_eight(fresh: Stack) -> None:
    """What the engine asks of SQS for one followed order from POST to `confirmed`: its
    four step messages, and no notification (each would have cost a send, a receive
    and a delete more)."""
    sent: Counter[str] = Counter()

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in ("SendMessage", "SendMessageBatch"):
            queue = params["QueueUrl"].rsplit("-", 1)[-1]
            sent[queue] += len(params.get("Entries", [params]))

    fresh.engine.sqs.meta.events.register("before-parameter-build.sqs", count)
    try:
        order_id = fresh.place()
        connection = fresh.open_connection(f"c-{uuid.uuid4().hex[:8]}")
        assert fresh.engine.subscriptions.subscribe(connection, order_id)
        fresh.run(order_id)
    finally:
        fresh.engine.sqs.meta.events.unregister("before-parameter-build.sqs", count)

    assert fresh.management.messages(connection)[-1]["status"] == "confirmed"
    assert sent == {"route": 1, "build": 1, "submit": 1, "confirm": 1}
