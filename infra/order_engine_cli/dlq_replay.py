"""Running a replay over several dead-letter queues: progress while it moves, and a
summary of what moved, what was skipped and what failed, per queue."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from order_engine_cli.dlq_mover import (
    MoveReport,
    MoveTasksUnsupported,
    Outcome,
    latest_move_task,
    move_back,
    start_move_task,
)
from order_engine_cli.dlq_queues import DeadLetterQueue, Message, depth
from order_engine_cli.dlq_target import Target, sqs_errors

Selector = Callable[[DeadLetterQueue, Counter[str]], Callable[[Message], bool]]


@dataclass
class ReplayResult:
    failed: int = 0
    would_move: list[tuple[DeadLetterQueue, Message]] = field(default_factory=list)


def replay_queues(
    console: Console,
    target: Target,
    queues: list[DeadLetterQueue],
    selector: Selector,
    *,
    limit: int | None,
    dry_run: bool,
    server_side: bool,
) -> ReplayResult:
    result = ReplayResult()
    summary = Table(title="dry run: nothing changed" if dry_run else "replay", title_justify="left")
    for column in ("dead-letter queue", "back to", "would move" if dry_run else "moved"):
        summary.add_column(column)
    for column in ("skipped", "failed", "left in DLQ"):
        summary.add_column(column, justify="right")
    problems: list[str] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with sqs_errors(target.where), Progress(*columns, console=console) as progress:
        for queue in queues:
            before = depth(target.sqs, queue.queue)
            task = progress.add_task(queue.name, total=before.visible)
            skipped: Counter[str] = Counter()
            moved: int | None = None
            failed = 0
            if server_side and before.visible:
                try:
                    moved, failure = _server_side(target, queue, progress, task)
                except MoveTasksUnsupported:
                    console.print(
                        "[yellow]This SQS has no message move tasks (moto): moving "
                        "client-side instead.[/]"
                    )
                    server_side = False
                else:
                    if failure:
                        failed = 1  # how many is unknown; the task said why
                        problems.append(f"{queue.name}: the move task ended {failure}")
            if moved is None:
                report = _client_side(
                    target,
                    queue,
                    selector(queue, skipped),
                    progress,
                    task,
                    limit=limit,
                    dry_run=dry_run,
                    result=result,
                )
                moved = report.count(Outcome.WOULD_MOVE if dry_run else Outcome.MOVED)
                failed = report.count(Outcome.FAILED)
                problems += [f"{queue.name}: {problem}" for problem in report.problems]
            result.failed += failed
            summary.add_row(
                queue.name,
                ", ".join(source.name for source in queue.sources),
                str(moved),
                _skipped(skipped),
                f"[red]{failed}[/]" if failed else "0",
                str(depth(target.sqs, queue.queue).total),
            )
    console.print(summary)
    for problem in problems:
        console.print(f"[red]failed[/] {escape(problem)}")
    return result


def _client_side(
    target: Target,
    queue: DeadLetterQueue,
    select: Callable[[Message], bool],
    progress: Progress,
    task: TaskID,
    *,
    limit: int | None,
    dry_run: bool,
    result: ReplayResult,
) -> MoveReport:
    def on_message(message: Message, outcome: Outcome) -> None:
        progress.advance(task)
        if outcome is Outcome.WOULD_MOVE:
            result.would_move.append((queue, message))

    return move_back(
        target.sqs, queue, select=select, limit=limit, dry_run=dry_run, on_message=on_message
    )


def _server_side(
    target: Target, queue: DeadLetterQueue, progress: Progress, task: TaskID
) -> tuple[int, str | None]:
    """(moved, failure) of a StartMessageMoveTask, followed until it ends. Raises
    MoveTasksUnsupported where SQS has none (moto)."""
    start_move_task(target.sqs, queue)
    while True:
        state = latest_move_task(target.sqs, queue)
        if state is not None:
            progress.update(task, completed=state.moved, total=state.to_move)
            if state.finished:
                failure = state.failure or (None if state.status == "COMPLETED" else state.status)
                return state.moved, failure
        time.sleep(0.5)


def _skipped(counts: Counter[str]) -> str:
    if not counts:
        return "0"
    return f"{sum(counts.values())} (" + ", ".join(f"{n} {why}" for why, n in counts.items()) + ")"
