"""The price watch's tick: quote each waiting pair, fire the limit orders it meets."""

from __future__ import annotations

from typing import Any

from chalice import Chalice
from chalice.app import SQSEvent

from order_engine.consumers import handle_watch_batch
from order_engine.wiring import engine

app = Chalice(app_name="order-engine-watcher")

# The queue name serves `chalice deploy` only; template.yaml is what deploys.


@app.on_sqs_message(queue="order-engine-watch", batch_size=1)
def tick(event: SQSEvent) -> dict[str, Any]:
    return handle_watch_batch(engine(), event.to_dict())
