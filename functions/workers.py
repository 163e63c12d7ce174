"""One SQS handler per pipeline step. Each advances an order by exactly one state."""

from __future__ import annotations

from typing import Any

from chalice import Chalice
from chalice.app import SQSEvent

from order_engine.consumers import handle_step_batch
from order_engine.orders import Step
from order_engine.wiring import engine

app = Chalice(app_name="order-engine-workers")

# The queue names here serve `chalice deploy` only; template.yaml is what deploys.


@app.on_sqs_message(queue="order-engine-route", batch_size=10)
def route(event: SQSEvent) -> dict[str, Any]:
    return handle_step_batch(engine(), Step.ROUTE, event.to_dict())


@app.on_sqs_message(queue="order-engine-build", batch_size=10)
def build(event: SQSEvent) -> dict[str, Any]:
    return handle_step_batch(engine(), Step.BUILD, event.to_dict())


@app.on_sqs_message(queue="order-engine-submit", batch_size=10)
def submit(event: SQSEvent) -> dict[str, Any]:
    return handle_step_batch(engine(), Step.SUBMIT, event.to_dict())


@app.on_sqs_message(queue="order-engine-confirm", batch_size=10)
def confirm(event: SQSEvent) -> dict[str, Any]:
    return handle_step_batch(engine(), Step.CONFIRM, event.to_dict())
