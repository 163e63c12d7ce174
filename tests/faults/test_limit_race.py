"""A cancel racing the price watch's trigger: each limit order ends with exactly one
outcome, cancelled with no swap, or routed on (and the cancel refused), never both.

The cancel here is the conditional transition watching -> cancelled through the store,
as every cancel is (the cancel API builds on this same transition)."""

from __future__ import annotations

import random
import threading
import time

import psycopg

from order_engine.orders import TERMINAL, Status
from order_engine.outbox import transition_messages
from tests.faults.harness import FaultStack

# Met by the market at once (SOL trades near 150 USDC): every tick fires these orders.
LIMIT_ORDER = {
    "type": "limit",
    "tokenIn": "SOL",
    "tokenOut": "USDC",
    "amount": "1.25",
    "limitPrice": "100",
    "slippageBps": 500,
}
ROUNDS = 6
ORDERS_PER_ROUND = 5


def start_watching(stack: FaultStack, order_ids: list[str]) -> None:
    deadline = time.monotonic() + 10
    while any(stack.engine.store.get_order(o).status is not Status.WATCHING for o in order_ids):  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the route step never started the watch"
        stack.drain_once(["route"])


def cancel(stack: FaultStack, order_id: str) -> bool:
    result = stack.engine.store.transition(
        order_id,  # type: ignore[arg-type]
        Status.WATCHING,
        Status.CANCELLED,
        data={"reason": "cancelled by its owner"},
        outbox=transition_messages(order_id, Status.CANCELLED),  # type: ignore[arg-type]
    )
    if result.applied:
        stack.engine.outbox.publish(result.outbox)
    return result.applied


def trigger(stack: FaultStack) -> None:
    # Another runtime left running in this process may claim a tick first: claim the next.
    watch = stack.engine.watch
    while not watch.tick(watch._store.clock()[0] + 1).claimed:
        pass
    stack.drain_once(["route"])


def cancel_some(
    stack: FaultStack, victims: list[str], pause: float, cancelled: dict[str, bool]
) -> None:
    time.sleep(pause)
    for order_id in victims:
        cancelled[order_id] = cancel(stack, order_id)


def race_once(stack: FaultStack, rng: random.Random) -> None:
    order_ids = [stack.place(LIMIT_ORDER) for _ in range(ORDERS_PER_ROUND)]
    start_watching(stack, order_ids)
    cancelled: dict[str, bool] = {}
    victims = rng.sample(order_ids, rng.randint(1, len(order_ids)))
    racers = [
        threading.Thread(target=trigger, args=(stack,)),
        threading.Thread(
            target=cancel_some, args=(stack, victims, rng.uniform(0, 0.05), cancelled)
        ),
    ]
    rng.shuffle(racers)
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert stack.settle(order_ids) == [], "every order ends"

    for order_id in order_ids:
        events = stack.engine.store.get_events(order_id)  # type: ignore[arg-type]
        path = [event.to_status for event in events]
        outcomes = [status for status in path if status in TERMINAL]
        assert len(outcomes) == 1, (order_id, path)
        if cancelled.get(order_id):
            assert path == [Status.PENDING, Status.WATCHING, Status.CANCELLED]
        else:
            assert Status.CANCELLED not in path
            assert path[:3] == [Status.PENDING, Status.WATCHING, Status.ROUTING]
            assert events[2].data["trigger"]["price"], "the trigger's quote is recorded"


def test_cancel_racing_the_trigger_ends_each_order_once(stack: FaultStack, fault_seed: int) -> None:
    rng = random.Random(fault_seed)
    for _ in range(ROUNDS):
        race_once(stack, rng)
    stack.check()


def test_the_checker_finds_a_swap_after_cancel_and_a_second_outcome(stack: FaultStack) -> None:
    """The checker itself: a cancelled order that swapped anyway, then also expired, is
    an illegal history on both counts."""
    order_id = stack.place(LIMIT_ORDER)
    start_watching(stack, [order_id])
    assert cancel(stack, order_id)
    assert stack.settle([order_id]) == []
    planted_signature = f"planted-{order_id}"
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dex_submissions (signature, order_id, venue) VALUES (%s, %s, 'raydium')",
            (planted_signature, order_id),
        )
        conn.execute(
            "INSERT INTO order_events (order_id, seq, from_status, to_status)"
            " VALUES (%s, 4, 'cancelled', 'expired')",
            (order_id,),
        )
        conn.execute(
            "UPDATE orders SET status = 'expired', version = 4, failure_reason = 'planted'"
            " WHERE id = %s",
            (order_id,),
        )
    try:
        report = stack.checker().check([order_id])
    finally:
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM dex_submissions WHERE signature = %s", (planted_signature,))

    assert any("2 outcomes: ['cancelled', 'expired']" in p for p in report.illegal), report.illegal
    assert any("a swap on the venue, and the order cancelled" in p for p in report.illegal)
