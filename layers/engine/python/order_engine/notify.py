"""Pushing order events to WebSocket subscribers.

Delivery works from the event table, not from the queue message: the notifier is
told "order O changed", locks O's subscriptions, and sends every subscriber the
events past its cursor, in `seq` order. So a late, duplicated or reordered notify
message can never make a client see a gap or a status out of order, and a standard
(non-FIFO) queue is enough. A subscriber's first delivery is a snapshot: the order as
it stands with every past event. A crash between send and cursor update resends
events with the same `seq`, which clients drop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from order_engine import telemetry
from order_engine.errors import TransientError
from order_engine.records import Order, OrderEvent
from order_engine.subscriptions import SubscriptionStore

log = logging.getLogger(__name__)

# API Gateway refuses bigger WebSocket messages (PayloadTooLargeException).
MAX_MESSAGE_BYTES = 128 * 1024


class ConnectionGone(Exception):
    """The client has disconnected (API Gateway's GoneException)."""


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

    def send(self, connection_id: str, message: dict[str, Any]) -> None:
        """One message to one connection, outside any subscription (ConnectionGone
        when it has left)."""
        self._sender.send(connection_id, message)

    def deliver(self, order_id: UUID) -> int:
        """Bring every subscriber of `order_id` up to date; return messages sent."""
        sent = gone = 0
        with self._store.deliveries(order_id) as batch:
            for pending in batch.pending:
                if not pending.events:
                    continue
                if pending.last_seq == 0:
                    assert batch.order is not None  # read whenever a snapshot is due
                    messages = [snapshot_message(batch.order, pending.events)]
                else:
                    messages = [event_message(order_id, event) for event in pending.events]
                try:
                    for message in messages:
                        self._sender.send(pending.connection_id, message)
                except ConnectionGone:
                    log.info("connection %s is gone; dropping it", pending.connection_id)
                    batch.drop(pending.connection_id)
                    gone += 1
                    continue
                batch.advance(pending.connection_id, pending.events[-1].seq)
                sent += len(messages)
        telemetry.notifier_pass(order_id, delivered=sent, gone=gone)
        return sent
