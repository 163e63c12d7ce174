"""`order-engine dlq`: the operator's tool for messages parked in dead-letter queues.

A step message lands in its queue's DLQ after failing maxReceiveCount (5) times: most
often because PostgreSQL was down (the order is left where it was), or because the
body can never be handled (poison). `list` and `show` look without changing anything;
`replay` sends messages back to their source queue as new messages. Replaying is safe
however often it runs: a step message for an order that has moved on is acknowledged
as a duplicate and changes nothing (pipeline.py, `_not_ready`).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from order_engine.errors import InfrastructureError, PoisonMessage
from order_engine.messaging import NOTIFY_TOPIC, decode_notify_message, decode_step_message
from order_engine.orders import Step
from order_engine.records import Order
from order_engine_cli.dlq_queues import DeadLetterQueue, Message, browse, depth, oldest_sent
from order_engine_cli.dlq_replay import replay_queues
from order_engine_cli.dlq_target import connect, sqs_errors, sqs_options
from order_engine_cli.options import database_url_option

NONE = "—"


@click.group()
def dlq() -> None:
    """Inspect and replay messages parked in the dead-letter queues.

    \b
    A step message is parked after 5 failed receives (PostgreSQL down, a bug, a
    poison body). Fix the cause, then replay: each message goes back to its step's
    queue as a new message. Replaying twice is harmless.

    \b
    SQS is found from --endpoint-url, else $AWS_ENDPOINT_URL_SQS, else the running
    `order-engine up` of this checkout.

    \b
    Examples:
      order-engine dlq list
      order-engine dlq show route
      order-engine dlq replay --all
      order-engine dlq replay --all --endpoint-url aws --stack-name order-engine
    """


@dlq.command("list")
@sqs_options
@click.pass_context
def list_command(
    ctx: click.Context, endpoint_url: str | None, region: str | None, stack_name: str | None
) -> None:
    """Each dead-letter queue, its message count and the age of its oldest message.

    \b
    "messages" counts visible and in-flight ones; "oldest" is when the oldest
    message we could peek at was first sent to its queue (a peek sees ten at most).

    \b
    Example:
      order-engine dlq list --endpoint-url http://127.0.0.1:4566
    """
    target = connect(ctx, endpoint_url, region, stack_name)
    table = Table(title="dead-letter queues", title_justify="left")
    for column in ("dead-letter queue", "source queue", "messages", "in flight", "oldest"):
        # Fold rather than cut: operators copy queue names from here.
        table.add_column(
            column,
            justify="right" if column in {"messages", "in flight"} else "left",
            overflow="fold",
        )
    total = 0
    with sqs_errors(target.where):
        for queue in target.dead_letter_queues():
            count = depth(target.sqs, queue.queue)
            oldest = oldest_sent(target.sqs, queue.queue) if count.visible else None
            total += count.total
            table.add_row(
                queue.name,
                ", ".join(source.name for source in queue.sources),
                _count(count.total),
                str(count.in_flight),
                _when(oldest) if oldest else ("?" if count.total else NONE),
            )
    console = Console()
    console.print(escape(target.where))
    console.print(table)
    if total:
        console.print(
            "Look inside with `order-engine dlq show QUEUE`; resume with "
            "`order-engine dlq replay --all`."
        )


@dataclass(frozen=True)
class Parked:
    """A DLQ message as an operator reads it."""

    message: Message
    order_id: str | None
    step: str | None
    poison: str | None  # why it can never be handled, or None


def decode(dlq: DeadLetterQueue, stack_name: str, message: Message) -> Parked:
    topic = dlq.sources[0].name.removeprefix(f"{stack_name}-").removesuffix(".fifo")
    try:
        if topic == NOTIFY_TOPIC:
            notify = decode_notify_message(message.body)
            return Parked(message, str(notify.order_id), NOTIFY_TOPIC, None)
        step = decode_step_message(message.body)
    except PoisonMessage as problem:
        return Parked(message, None, None, str(problem))
    if topic in {s.value for s in Step} and step.step.value != topic:
        wrong = f"a {step.step} message on the {topic} queue"
        return Parked(message, str(step.order_id), step.step.value, wrong)
    return Parked(message, str(step.order_id), step.step.value, None)


@dlq.command()
@click.argument("queue")
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="Messages to show."
)
@database_url_option(
    "PostgreSQL, to show each order's status and last error [env: DATABASE_URL; "
    "default: the embedded database of the running `order-engine up`]."
)
@sqs_options
@click.pass_context
def show(
    ctx: click.Context,
    queue: str,
    limit: int,
    database_url: str | None,
    endpoint_url: str | None,
    region: str | None,
    stack_name: str | None,
) -> None:
    """The messages of one dead-letter queue, decoded; nothing is deleted.

    QUEUE is the DLQ's name or its source queue's, with or without the stack prefix
    (route, local-route and local-route-dlq are the same). Messages are held for a
    moment while read and released at once. Bodies that are not valid envelopes are
    shown raw, as poison. Each look adds one to a message's receive count in the DLQ.

    \b
    Example:
      order-engine dlq show route --limit 50
    """
    target = connect(ctx, endpoint_url, region, stack_name)
    queue_ = target.resolve(queue)
    with sqs_errors(target.where):
        count = depth(target.sqs, queue_.queue)
        messages = browse(target.sqs, queue_.queue, limit)
    parked = [decode(queue_, target.stack_name, message) for message in messages]
    orders, note = _orders(database_url or target.database_url, [p.order_id for p in parked])
    console = Console()
    console.print(escape(target.where))
    console.print(_show_table(queue_, parked, orders, count.total))
    if note:
        console.print(f"[dim]{escape(note)}[/]")


def _show_table(
    queue: DeadLetterQueue, parked: list[Parked], orders: dict[str, Order], total: int
) -> Table:
    title = f"{queue.name}: {len(parked)} of {total} message(s)"
    table = Table(title=title, title_justify="left")
    table.add_column("message", no_wrap=True)
    table.add_column("order", no_wrap=True, min_width=36)
    for column in ("step", "receives", "sent", "order status", "last error / body"):
        table.add_column(column, overflow="fold")
    for item in parked:
        order = orders.get(item.order_id or "")
        sent = item.message.sent_at
        if item.poison:
            raw = escape(repr(item.message.body)[:300])
            detail = f"[red]poison: {escape(item.poison)}[/]\n{raw}"
        else:
            detail = escape(order.last_error) if order and order.last_error else NONE
        table.add_row(
            item.message.message_id[:8],
            item.order_id or NONE,
            item.step or "[red]poison[/]",
            str(item.message.receive_count),
            _when(sent) if sent else "?",
            order.status.value if order else NONE,
            detail,
        )
    return table


def _orders(url: str | None, ids: Iterable[str | None]) -> tuple[dict[str, Order], str | None]:
    """Each order's row, when a database is at hand; else why not."""
    wanted = sorted({order_id for order_id in ids if order_id})
    if not wanted:
        return {}, None
    if not url:
        return {}, "Set DATABASE_URL (or --database-url) to see each order's status and last error."
    # Only `show` with a database needs psycopg's pool.
    from order_engine.database import Database
    from order_engine.store import Store

    pool_log = logging.getLogger("psycopg.pool")
    level = pool_log.level
    pool_log.setLevel(logging.CRITICAL)  # a database that is down is said once, below
    try:
        with Database(url, max_size=1, timeout=3) as database:
            store = Store(database)
            found = (store.get_order(uuid.UUID(order_id)) for order_id in wanted)
            return {str(order.id): order for order in found if order is not None}, None
    except InfrastructureError as error:
        return {}, f"Order status and last error not shown: {error}"
    finally:
        pool_log.setLevel(level)


@dlq.command()
@click.argument("queue", required=False)
@click.option("--all", "all_queues", is_flag=True, help="Every dead-letter queue of the stack.")
@click.option(
    "--order-id",
    "order_ids",
    multiple=True,
    metavar="ID",
    help="Only this order's messages (repeatable); the others stay, visible at once.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Move at most N messages per queue.")
@click.option("--dry-run", is_flag=True, help="Change nothing; list what would move.")
@click.option(
    "--include-poison",
    is_flag=True,
    help="Also move bodies that can never be handled (they will come back here).",
)
@click.option(
    "--server-side",
    is_flag=True,
    help="Let SQS move everything (StartMessageMoveTask: AWS, LocalStack; not moto, "
    "where this falls back to the client-side move). No filters.",
)
@sqs_options
@click.pass_context
def replay(
    ctx: click.Context,
    queue: str | None,
    all_queues: bool,
    order_ids: tuple[str, ...],
    limit: int | None,
    dry_run: bool,
    include_poison: bool,
    server_side: bool,
    endpoint_url: str | None,
    region: str | None,
    stack_name: str | None,
) -> None:
    """Send parked messages back to their source queue, as new messages.

    Each message is sent again with the same body (so its receive count starts from
    zero and it is not bounced straight back), and deleted from the DLQ only once the
    send succeeded. Poison bodies are skipped unless --include-poison. Safe to run
    again: messages of orders that moved on meanwhile are acknowledged as duplicates.
    Exits 1 if any message failed to move.

    \b
    Examples:
      order-engine dlq replay --all
      order-engine dlq replay route --order-id 6f1c…   (one order)
      order-engine dlq replay build --limit 10 --dry-run
    """
    if bool(queue) == all_queues:
        raise click.UsageError("name one QUEUE, or pass --all")
    if server_side and (order_ids or limit or dry_run or include_poison):
        raise click.UsageError(
            "--server-side moves every message: it does not combine with --order-id, "
            "--limit, --dry-run or --include-poison"
        )
    target = connect(ctx, endpoint_url, region, stack_name)
    queues = target.dead_letter_queues() if all_queues else [target.resolve(queue or "")]

    def selector(dlq: DeadLetterQueue, skipped: Counter[str]) -> Callable[[Message], bool]:
        def select(message: Message) -> bool:
            parked = decode(dlq, target.stack_name, message)
            if parked.poison and not include_poison:
                skipped["poison"] += 1
                return False
            if order_ids and parked.order_id not in order_ids:
                skipped["other orders"] += 1
                return False
            return True

        return select

    console = Console()
    console.print(escape(target.where))
    result = replay_queues(
        console, target, queues, selector, limit=limit, dry_run=dry_run, server_side=server_side
    )
    if result.would_move:
        table = Table(title="would move", title_justify="left")
        for column in ("message", "order", "step", "back to"):
            table.add_column(column, no_wrap=True)
        for queue_, message in result.would_move:
            parked = decode(queue_, target.stack_name, message)
            destination = queue_.destination(message)
            table.add_row(
                message.message_id[:8],
                parked.order_id or NONE,
                parked.step or "[red]poison[/]",
                destination.name if destination else "?",
            )
        console.print(table)
    if result.failed:
        raise SystemExit(1)


def _count(n: int) -> str:
    return f"[bold yellow]{n}[/]" if n else "0"


def _when(moment: datetime) -> str:
    """Local time and age: `13:02:11 (4m 10s ago)`."""
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    age = f"{hours}h {rest // 60}m" if hours else f"{rest // 60}m {rest % 60}s"
    local = moment.astimezone()
    day = "" if local.date() == datetime.now().astimezone().date() else f"{local:%Y-%m-%d} "
    return f"{day}{local:%H:%M:%S} ({age} ago)"
