"""The scheduled safety net: publish what was left behind, re-drive what got stuck.

Two things can strand an order, and both are caught here:
- a crash (or an SQS outage) between a commit and its publish leaves outbox rows
  unsent: they are published, each claimed with SKIP LOCKED so two sweepers never
  send the same row twice at once;
- a message lost for good (parked in a DLQ nobody replays, purged queue) leaves a
  non-terminal order with nothing in flight: its current step is sent again.
Re-sending is always safe: a duplicate step message changes nothing (pipeline.py).
One sweep runs at a time (`sweep_turn`): one that starts while another is still at work
returns at once. The claims underneath are safe on their own as well (FOR UPDATE SKIP
LOCKED, and a re-driven order is touched), so running the sweeper twice, or two at
once, sends nothing more: each row is published once, each stuck order re-driven once
per deadline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from order_engine import telemetry
from order_engine.outbox import Outbox, OutboxStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    published: int
    redriven: int
    # Another sweep held the turn, so this one did nothing.
    skipped: bool = False


class Sweeper:
    def __init__(
        self,
        store: OutboxStore,
        outbox: Outbox,
        *,
        outbox_grace_seconds: float,
        stuck_after_seconds: float,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._outbox_grace_seconds = outbox_grace_seconds
        self._stuck_after_seconds = stuck_after_seconds

    def sweep(self) -> SweepReport:
        with self._store.sweep_turn() as mine:
            if not mine:
                log.info("sweep: the previous sweep is still running; this one returns")
                return SweepReport(published=0, redriven=0, skipped=True)
            report = SweepReport(published=self.relay_outbox(), redriven=self.redrive_stuck())
        telemetry.outbox_relayed(report.published)
        if report.published or report.redriven:
            log.info(
                "sweep: published %d outbox rows, re-drove %d stuck orders",
                report.published,
                report.redriven,
            )
        return report

    def relay_outbox(self) -> int:
        return self._outbox.relay(older_than_seconds=self._outbox_grace_seconds)

    def redrive_stuck(self) -> int:
        # Claimed, not just found: each stuck order is re-driven by one sweeper, once per
        # deadline (the claim touches it), however many sweeps run or overlap.
        stuck = self._store.claim_stuck(older_than_seconds=self._stuck_after_seconds)
        for order in stuck:
            step = self._outbox.redrive(order)
            log.warning(
                "order %s stuck in %s since %s: re-sent %s",
                order.id,
                order.status,
                order.updated_at,
                step,
            )
        return len(stuck)
