"""Pushing order events to WebSocket subscribers.

Delivery works from the event table, not from the queue message: a pass is told
"order O changed" (by the worker that just committed O's transition, or by a notify
message for what that worker could not deliver; outbox.py), reads what each of O's
subscribers lacks (the events past its cursor), posts it in `seq` order, then advances
that subscriber's cursor. The read is often done already: by the worker's transition,
when each subscriber lacks only its event, or by a subscribe, for the new subscriber's
snapshot (`due`; store.py and subscriptions.py say why neither can miss a subscriber
or an event). So a late, duplicated or reordered notify message can never
make a client see a gap or a status out of order, and a standard (non-FIFO) queue is
enough. A subscriber's first delivery is a snapshot: the order as it stands with every past event.

No transaction or lock is held while posting: a socket that cannot keep up would
otherwise hold a pooled connection, and the rows other passes wait for, for as long
as its post hangs. Two passes for one order may therefore post at once. Each posts a
contiguous run starting right after the cursor it read, and a cursor only moves after
its run was posted, so every run starts at or below what the client already has:
after dropping the `seq`s it has seen (which clients do), a client sees each event
once, in order, with no gap. A crash between post and cursor update resends events
with the same `seq`, dropped the same way. Within one process (the records of a batch
run at once), passes for one order take turns, so a pass that reads for itself does
not post what the one before it posted; across processes, or with a read done before
the turn (`due`), they may, which costs duplicates only. A step batch writes its
passes' cursor moves together, in the statement that closes the batch (outbox.py).

Subscribers fail alone: a connection that is gone, or too slow to take a post within
the client's read timeout, is forgotten (the gateway closes a slow one); a throttled
or unreachable one keeps its cursor and the message is retried, after every other
subscriber has had its events.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from order_engine import telemetry
from order_engine.errors import TransientError
from order_engine.records import DueDeliveries, Order, OrderEvent
from order_engine.subscriptions import CursorMove, CursorMoves, SubscriptionStore

log = logging.getLogger(__name__)

# API Gateway refuses bigger WebSocket messages (PayloadTooLargeException).
MAX_MESSAGE_BYTES = 128 * 1024


class ConnectionGone(Exception):
    """The client has disconnected (API Gateway's GoneException)."""


class ConnectionTooSlow(ConnectionGone):
    """The connection did not take a post within the read timeout: its client is not
    reading. It is dropped like a gone one (the gateway closes it)."""


class ConnectionSender:
    """Posts to one WebSocket connection through the API Gateway management API."""

    def __init__(self, client: Any) -> None:
        # client: boto3 "apigatewaymanagementapi" client bound to the API's endpoint
        self._client = client

    def send(self, connection_id: str, message: dict[str, Any]) -> None:
        data = json.dumps(message, default=str).encode()
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=data)
        except self._client.exceptions.GoneException:
            raise ConnectionGone(connection_id) from None
        except self._client.exceptions.PayloadTooLargeException:
            # Retrying cannot make it smaller; say so and move on.
            log.error("message of %d bytes too large for connection %s", len(data), connection_id)
        except self._client.exceptions.LimitExceededException as exc:
            raise TransientError(f"WebSocket throttled: {exc}") from exc
        except ReadTimeoutError:
            raise ConnectionTooSlow(connection_id) from None
        except (BotoCoreError, ClientError) as exc:  # the management API itself failed
            raise TransientError(f"posting to {connection_id} failed: {exc}") from exc


def accepted_message(order_id: UUID) -> dict[str, Any]:
    """The answer to a WebSocket `execute`: the order exists; its snapshot follows."""
    return {"type": "accepted", "orderId": str(order_id)}


def event_message(order_id: UUID, event: OrderEvent) -> dict[str, Any]:
    return {"type": "event", "orderId": str(order_id), **event.to_dict()}


def snapshot_message(order: Order, events: Sequence[OrderEvent]) -> dict[str, Any]:
    return {
        "type": "snapshot",
        "orderId": str(order.id),
        # The status the events reach, not the row's: the row may already be further
        # along, and those later events follow as single messages.
        "status": events[-1].to_status.value if events else order.status.value,
        "order": order.to_dict(),
        "events": [event.to_dict() for event in events],
    }


class Notifier:
    def __init__(self, store: SubscriptionStore, sender: ConnectionSender) -> None:
        self._store = store
        self._sender = sender
        # order id -> [its lock, passes using it]; an entry lives while a pass does.
        self._turns: dict[UUID, list[Any]] = {}
        self._turns_guard = threading.Lock()

    def send(self, connection_id: str, message: dict[str, Any]) -> None:
        """One message to one connection, outside any subscription (ConnectionGone
        when it has left)."""
        self._sender.send(connection_id, message)

    def deliver(
        self,
        order_id: UUID,
        *,
        cursors: CursorMoves | None = None,
        due: DueDeliveries | None = None,
    ) -> int:
        """Bring every subscriber of `order_id` up to date; return messages sent.

        Each subscriber's cursor moves past what it was sent: at once, or with
        `cursors` (a step batch's), when the batch writes them together. `due`: what
        they lack, as the transition just committed read it (TransitionResult.due);
        without it, it is read here.

        Raises TransientError once every subscriber has been tried, if one of them
        could not be reached for a reason that may pass (throttled, API down): the
        retried message then only resends to those, the others' cursors having moved."""
        with self._turn(order_id):
            return self._deliver(order_id, cursors, due)

    @contextmanager
    def _turn(self, order_id: UUID) -> Iterator[None]:
        """One pass per order at a time in this process (no database lock involved)."""
        with self._turns_guard:
            turn = self._turns.setdefault(order_id, [threading.Lock(), 0])
            turn[1] += 1
        try:
            with turn[0]:
                yield
        finally:
            with self._turns_guard:
                turn[1] -= 1
                if turn[1] == 0:
                    del self._turns[order_id]

    def _deliver(
        self, order_id: UUID, cursors: CursorMoves | None, due: DueDeliveries | None
    ) -> int:
        if due is None:
            due = self._store.due_deliveries(order_id)
        sent = gone = 0
        unreached: list[str] = []
        for pending in due.pending:
            if not pending.events:
                continue
            if pending.last_seq == 0:
                assert due.order is not None  # read whenever a snapshot is due
                messages = [snapshot_message(due.order, pending.events)]
            else:
                messages = [event_message(order_id, event) for event in pending.events]
            try:
                for message in messages:
                    self._sender.send(pending.connection_id, message)
            except ConnectionGone as exc:
                reason = "too slow" if isinstance(exc, ConnectionTooSlow) else "gone"
                log.info("connection %s is %s; dropping it", pending.connection_id, reason)
                self._store.remove_connection(pending.connection_id)
                gone += 1
                continue
            except TransientError as exc:
                log.warning("order %s: %s", order_id, exc)
                unreached.append(pending.connection_id)
                continue
            read, last = pending.last_seq, pending.events[-1].seq
            if cursors is None:
                self._store.advance_cursor(pending.connection_id, order_id, read=read, sent=last)
            else:
                cursors.add(CursorMove(pending.connection_id, order_id, read, last))
            sent += len(messages)
        telemetry.notifier_pass(order_id, delivered=sent, gone=gone)
        if unreached:
            raise TransientError(f"{len(unreached)} subscriber(s) of {order_id} not reached")
        return sent
