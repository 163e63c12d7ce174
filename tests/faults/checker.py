"""The fault suite's checker: after a scenario, read what the system recorded and judge it.

In the manner of Jepsen's `total-queue` checker ("what goes in must come out"), it
reads the orders, their events, the outbox, the venue ledger (`dex_submissions`), the
dead-letter queues and, when the scenario recorded them, every step delivery and every
WebSocket message, and checks these invariants:

- I1 no loss: every accepted order exists and is terminal, and none of its outbox rows
  is left unsent (the relay has run out of work for it).
- I2 legal history: `order_events` by seq is 1, 2, 3 … without a gap, starts with the
  creation of a pending order, and every step is a transition of
  order_engine.orders.TRANSITIONS; the row agrees with its history (status, version,
  failure reason, executed price); every transition wrote its messages to the outbox.
  An order has one outcome: its history enters one terminal status at most (never
  both `cancelled` and a swap, never `expired` and then routed), and an expired order
  says why.
- I3 at most one swap: at most one `dex_submissions` row per order, with the order's
  signature and venue; an order that reached `submitted` has its row, and an order
  with a row went through `submitted` (the engine never lost track of a swap); an
  order that ended `expired` or `cancelled` has no swap at all; in the
  recorded deliveries, at most one first submission per order.
- I4 duplicates are harmless: a delivery that changed nothing is a duplicate; it is
  counted, and it must have applied no transition; transitions applied by deliveries
  match the events one for one, and their first submissions are one at most.
  WebSocket subscribers may get an event twice (same seq), but once duplicates are
  dropped each one sees 1, 2, 3 …
- I5 dead letters are accounted for: every DLQ message is a poison body, or belongs to
  an order that failed or that finished anyway (after a replay, or as a stale copy).

Duplicates are reported, not failures (at-least-once delivery allows them); lost
orders, illegal histories, second swaps and unaccounted dead letters are failures.

    checker = Checker(database_url, sqs=sqs, dlq_urls=urls, seed=seed)
    report = checker.check(accepted, deliveries=log.deliveries)
    report.assert_ok()
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from order_engine.errors import PoisonMessage
from order_engine.messaging import decode_notify_message, decode_step_message
from order_engine.orders import INITIAL, TERMINAL, Status, Step, is_legal, step_for
from tests.faults.report import DeadLetter, Delivery, Report

__all__ = ["Checker", "DeadLetter", "Delivery", "Report"]

BESIDE_STEPS = frozenset({Status.EXPIRED, Status.CANCELLED})


class Checker:
    def __init__(
        self,
        database_url: str,
        *,
        sqs: Any = None,
        dlq_urls: Mapping[str, str] | None = None,
        seed: int | None = None,
    ) -> None:
        self.database_url = database_url
        self.sqs = sqs
        self.dlq_urls = dict(dlq_urls or {})
        self.seed = seed

    # --- waiting for the system to finish ------------------------------------------

    def settle(
        self,
        accepted: Iterable[str],
        *,
        drive: Callable[[], object] | None = None,
        timeout: float = 30.0,
        every_order_in_database: bool = False,
    ) -> list[str]:
        """Run `drive` (deliver queues, sweep…) until every accepted order is terminal
        with nothing left unsent in its outbox, or the deadline passes; return the ids
        still unfinished (an empty list when everything settled). With
        `every_order_in_database`, also the orders created but never acknowledged, which
        `check` then judges too: their outbox rows may still wait for the sweeper."""
        ids = list(dict.fromkeys(accepted))
        if every_order_in_database:
            with self._connect() as conn:
                ids += self._others(conn, ids)
        deadline = time.monotonic() + timeout
        while True:
            unfinished = self._unfinished(ids)
            if not unfinished or time.monotonic() >= deadline:
                return unfinished
            if drive is not None:
                drive()
            else:
                time.sleep(0.2)

    @staticmethod
    def _others(conn: Any, ids: list[str]) -> list[str]:
        return [
            row["id"]
            for row in conn.execute(
                "SELECT id::text AS id FROM orders WHERE NOT (id = ANY(%s::uuid[]))", (ids,)
            ).fetchall()
        ]

    def _unfinished(self, ids: Sequence[str]) -> list[str]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT o.id::text AS id FROM orders o WHERE o.id = ANY(%s::uuid[])"
                " AND o.status = ANY(%s)"
                " AND NOT EXISTS (SELECT 1 FROM outbox b"
                "                 WHERE b.order_id = o.id AND b.sent_at IS NULL)",
                (list(ids), [status.value for status in TERMINAL]),
            ).fetchall()
        done = {row["id"] for row in rows}
        return [order_id for order_id in ids if order_id not in done]

    # --- the check -----------------------------------------------------------------

    def check(
        self,
        accepted: Iterable[str],
        *,
        deliveries: Iterable[Delivery] | None = None,
        deliveries_complete: bool = True,
        notifications: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        every_order_in_database: bool = False,
    ) -> Report:
        """Judge the orders in `accepted` (acknowledged to their client), plus with
        `every_order_in_database` any other order found (created, never acknowledged:
        Jepsen's "recovered"), which must end the same way. `deliveries_complete`
        says the recorder saw every delivery of these orders (in-process scenarios)."""
        report = Report(seed=self.seed)
        ids = list(dict.fromkeys(accepted))
        with self._connect() as conn:
            if every_order_in_database:
                others = self._others(conn, ids)
                report.recovered = others
                ids += others
            orders = _by_id(conn, "SELECT * FROM orders", ids)
            events = _grouped(conn, "SELECT * FROM order_events", ids, "seq")
            outbox = _grouped(conn, "SELECT * FROM outbox", ids, "id")
            ledger = _grouped(conn, "SELECT * FROM dex_submissions", ids, "submitted_at")
        report.orders = len(ids)
        for order_id in ids:
            order = orders.get(order_id)
            if order is None:
                report.lost.append(f"{order_id}: accepted, but no such order")
                continue
            report.statuses[order["status"]] += 1
            history = events.get(order_id, [])
            self._check_progress(report, order, outbox.get(order_id, []))
            self._check_history(report, order, history)
            self._check_outbox(report, order_id, history, outbox.get(order_id, []))
            self._check_ledger(report, order, history, ledger.get(order_id, []))
        if deliveries is not None:
            self._check_deliveries(report, ids, events, deliveries, deliveries_complete)
        if notifications is not None:
            self._check_notifications(report, notifications)
        if self.sqs is not None and self.dlq_urls:
            self._check_dead_letters(report)
        return report

    # --- I1 ------------------------------------------------------------------------

    def _check_progress(
        self, report: Report, order: Mapping[str, Any], outbox: Sequence[Mapping[str, Any]]
    ) -> None:
        if Status(order["status"]) not in TERMINAL:
            report.lost.append(
                f"{order['id']}: still {order['status']} (attempts {order['attempts']}, "
                f"last error {order['last_error']!r})"
            )
        unsent = [row["dedupe_key"] for row in outbox if row["sent_at"] is None]
        if unsent:
            report.lost.append(f"{order['id']}: outbox rows never published: {unsent}")

    # --- I2 ------------------------------------------------------------------------

    def _check_history(
        self, report: Report, order: Mapping[str, Any], history: Sequence[Mapping[str, Any]]
    ) -> None:
        order_id = order["id"]
        seqs = [event["seq"] for event in history]
        if seqs != list(range(1, len(history) + 1)):
            report.illegal.append(f"{order_id}: seq {seqs} is not 1..{len(history)}")
            return
        if not history or history[0]["from_status"] is not None:
            report.illegal.append(f"{order_id}: history does not start with its creation")
            return
        if Status(history[0]["to_status"]) is not INITIAL:
            report.illegal.append(f"{order_id}: created as {history[0]['to_status']}")
        path = [Status(history[0]["to_status"])]
        for event in history[1:]:
            source, target = Status(event["from_status"]), Status(event["to_status"])
            if source is not path[-1]:
                report.illegal.append(
                    f"{order_id}: seq {event['seq']} leaves {source}, but the order was {path[-1]}"
                )
            elif not is_legal(source, target):
                report.illegal.append(
                    f"{order_id}: seq {event['seq']} {source} -> {target} is not a transition"
                )
            path.append(target)
        if Status(order["status"]) is not path[-1]:
            report.illegal.append(
                f"{order_id}: row says {order['status']}, history ends in {path[-1]}"
            )
        if order["version"] != len(history):
            report.illegal.append(
                f"{order_id}: version {order['version']} after {len(history)} events"
            )
        outcomes = [status.value for status in path if status in TERMINAL]
        if len(outcomes) > 1:
            report.illegal.append(f"{order_id}: {len(outcomes)} outcomes: {outcomes}")
        if path[-1] in (Status.FAILED, Status.EXPIRED) and not order["failure_reason"]:
            report.illegal.append(f"{order_id}: {path[-1]} without a reason")
        if path[-1] is Status.CONFIRMED and (
            order["executed_price"] is None or order["amount_out"] is None
        ):
            report.illegal.append(f"{order_id}: confirmed without an executed price")

    def _check_outbox(
        self,
        report: Report,
        order_id: str,
        history: Sequence[Mapping[str, Any]],
        outbox: Sequence[Mapping[str, Any]],
    ) -> None:
        """Every transition into a live status wrote the next step's message in its own
        transaction, so it cannot have been lost between the commit and SQS (B3).
        (Notify messages are judged by what subscribers received, not here.)"""
        topics = {row["topic"] for row in outbox}
        for event in history:
            status = Status(event["to_status"])
            following: Step | None = step_for(status)
            if following is not None and following.value not in topics:
                report.illegal.append(
                    f"{order_id}: the transition into {status} wrote no {following} message"
                )

    # --- I3 ------------------------------------------------------------------------

    def _check_ledger(
        self,
        report: Report,
        order: Mapping[str, Any],
        history: Sequence[Mapping[str, Any]],
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        order_id = order["id"]
        reached = {Status(event["to_status"]) for event in history}
        if len(rows) > 1:
            report.swaps.append(f"{order_id}: {len(rows)} swaps on the venue ledger")
            return
        ended_unswapped = reached & {Status.EXPIRED, Status.CANCELLED}
        if rows and ended_unswapped:
            report.illegal.append(
                f"{order_id}: a swap on the venue, and the order {sorted(ended_unswapped)[0]}"
            )
        if not rows:
            if Status.SUBMITTED in reached:
                report.swaps.append(f"{order_id}: submitted, but the venue has no transaction")
            return
        row = rows[0]
        if row["signature"] != order["tx_signature"]:
            report.swaps.append(
                f"{order_id}: venue has {row['signature'][:12]}…, the order "
                f"{(order['tx_signature'] or 'nothing')[:12]}…"
            )
        transaction = order["transaction"] or {}
        if row["venue"] != transaction.get("venue"):
            report.swaps.append(
                f"{order_id}: swapped on {row['venue']}, built for {transaction.get('venue')}"
            )
        if Status.SUBMITTED not in reached:
            report.swaps.append(
                f"{order_id}: the venue executed its transaction, but the order never "
                f"recorded a submission (it is {order['status']}: "
                f"{order['failure_reason'] or order['last_error']})"
            )

    # --- I4 ------------------------------------------------------------------------

    def _check_deliveries(
        self,
        report: Report,
        ids: Sequence[str],
        events: Mapping[str, Sequence[Mapping[str, Any]]],
        deliveries: Iterable[Delivery],
        complete: bool,
    ) -> None:
        wanted = set(ids)
        by_order: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            if delivery.order_id in wanted:
                by_order[delivery.order_id].append(delivery)
        for order_id, seen in by_order.items():
            report.deliveries += len(seen)
            report.duplicates += sum(d.duplicate for d in seen)
            report.retries += sum(d.result in {"retry", "error"} for d in seen)
            for delivery in seen:
                # (A duplicate may be the one that reached the venue first, when its twin
                # ran at the same moment and won the transition: the swaps of all
                # deliveries together are what must stay at one, below.)
                if delivery.duplicate and delivery.applied:
                    report.harmful_duplicates.append(
                        f"{order_id}: a {delivery.step} delivery reported as a duplicate "
                        f"applied {delivery.applied} transitions"
                    )
            swaps = sum(d.swaps for d in seen)
            if swaps > 1:
                report.swaps.append(f"{order_id}: {swaps} first submissions were delivered")
            applied = sum(d.applied for d in seen)
            # A delivery that died (crash, lost connection) may have committed before it
            # died, its commit unacknowledged (Jepsen's indeterminate operations).
            indeterminate = sum(d.result in {"error", "crashed"} for d in seen)
            # Expiry (the price watch) and cancelling (the API) are transitions no step
            # delivery makes.
            transitions = max(
                0,
                sum(Status(e["to_status"]) not in BESIDE_STEPS for e in events.get(order_id, []))
                - 1,
            )
            if applied > transitions or (
                complete and not applied <= transitions <= applied + indeterminate
            ):
                report.harmful_duplicates.append(
                    f"{order_id}: deliveries applied {applied} transitions ({indeterminate} "
                    f"more may have), the history has {transitions}"
                )

    def _check_notifications(
        self, report: Report, notifications: Mapping[str, Sequence[Mapping[str, Any]]]
    ) -> None:
        """Per connection and order: after dropping what was seen (seq <= the highest
        so far), the events are 1, 2, 3 … in order."""
        for connection, messages in notifications.items():
            highest: dict[str, int] = defaultdict(int)
            for message in messages:
                report.ws_messages += 1
                order_id = str(message.get("orderId"))
                if message.get("type") == "snapshot":
                    seqs = [int(event["seq"]) for event in message.get("events", [])]
                else:
                    seqs = [int(message["seq"])]
                for seq in seqs:
                    if seq <= highest[order_id]:
                        report.ws_duplicates += 1
                    elif seq != highest[order_id] + 1:
                        report.illegal.append(
                            f"connection {connection}: order {order_id} jumped from seq "
                            f"{highest[order_id]} to {seq}"
                        )
                        highest[order_id] = seq
                    else:
                        highest[order_id] = seq

    # --- I5 ------------------------------------------------------------------------

    def dead_letters(self) -> list[DeadLetter]:
        """Every message in the dead-letter queues, looked at and left in place."""
        found: list[DeadLetter] = []
        for name, url in self.dlq_urls.items():
            held: list[str] = []
            seen: set[str] = set()
            for _ in range(100):
                batch = self.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30
                ).get("Messages", [])
                fresh = [m for m in batch if m["MessageId"] not in seen]
                if not fresh:
                    break
                for message in fresh:
                    seen.add(message["MessageId"])
                    held.append(message["ReceiptHandle"])
                    found.append(DeadLetter(name, message["MessageId"], message["Body"]))
            for handle in held:  # put them back for whoever replays them
                self.sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0
                )
        return found

    def _check_dead_letters(self, report: Report) -> None:
        letters = self.dead_letters()
        ids = {_order_id(letter) for letter in letters} - {None}
        with self._connect() as conn:
            statuses = {
                row["id"]: row["status"]
                for row in conn.execute(
                    "SELECT id::text AS id, status FROM orders WHERE id = ANY(%s::uuid[])",
                    (list(ids),),
                ).fetchall()
            }
        for letter in letters:
            order_id = _order_id(letter)
            if order_id is None:
                report.dead_letters["poison"] += 1
                continue
            status = statuses.get(order_id)
            if status in (Status.FAILED, Status.EXPIRED, Status.CANCELLED):
                report.dead_letters[f"order {status}"] += 1
            elif status == Status.CONFIRMED:
                report.dead_letters["order finished anyway"] += 1
            else:
                report.unaccounted_dead_letters.append(
                    f"{letter.queue} {letter.message_id}: order {order_id} is "
                    f"{status or 'unknown'}; body {letter.body[:80]!r}"
                )

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row)


def _order_id(letter: DeadLetter) -> str | None:
    """The order a dead letter is about; None for a poison body (never processable:
    not an envelope, or a step message parked from another step's queue)."""
    topic = letter.queue.removesuffix("-dlq").rsplit("-", 1)[-1]
    try:
        if topic == "notify":
            return str(decode_notify_message(letter.body).order_id)
        message = decode_step_message(letter.body)
    except PoisonMessage:  # a malformed order id included: the decoder parses it
        return None
    return str(message.order_id) if message.step.value == topic else None


def _by_id(
    conn: psycopg.Connection[dict[str, Any]], query: str, ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    rows = conn.execute(query + " WHERE id = ANY(%s::uuid[])", (list(ids),)).fetchall()
    return {str(row["id"]): {**row, "id": str(row["id"])} for row in rows}


def _grouped(
    conn: psycopg.Connection[dict[str, Any]], query: str, ids: Sequence[str], order_by: str
) -> dict[str, list[dict[str, Any]]]:
    rows = conn.execute(
        query + f" WHERE order_id = ANY(%s::uuid[]) ORDER BY order_id, {order_by}", (list(ids),)
    ).fetchall()
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[str(row["order_id"])].append(row)
    return grouped
