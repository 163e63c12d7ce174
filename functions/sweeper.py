"""On a schedule: publish outbox rows left unsent, re-drive orders that got stuck."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from chalice import Chalice, Rate
from chalice.app import CloudWatchEvent

from order_engine.wiring import engine

app = Chalice(app_name="order-engine-sweeper")


@app.schedule(Rate(1, unit=Rate.MINUTES))
def sweep(event: CloudWatchEvent) -> dict[str, Any]:
    return asdict(engine().sweeper.sweep())
