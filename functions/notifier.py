"""Pushes new order events to the WebSocket connections subscribed to each order."""

from __future__ import annotations

from typing import Any

from chalice import Chalice
from chalice.app import SQSEvent

from order_engine.consumers import handle_notify_batch
from order_engine.wiring import engine

app = Chalice(app_name="order-engine-notifier")


@app.on_sqs_message(queue="order-engine-notify", batch_size=10)
def notify(event: SQSEvent) -> dict[str, Any]:
    return handle_notify_batch(engine(), event.to_dict())
