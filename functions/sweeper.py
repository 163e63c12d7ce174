"""On a schedule: publish outbox rows left unsent, re-drive orders that got stuck, and
seed the price watch's tick if its chain died."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from chalice import Chalice, Rate
from chalice.app import CloudWatchEvent

from order_engine.wiring import engine

app = Chalice(app_name="order-engine-sweeper")


@app.schedule(Rate(1, unit=Rate.MINUTES))
def sweep(event: CloudWatchEvent) -> dict[str, Any]:
    report = asdict(engine().sweeper.sweep())
    return {**report, "watchSeeded": engine().watch.ensure_running()}
