"""How Lambda reads an SQS batch's outcome (AWS "Success and failure conditions").

With `FunctionResponseTypes: [ReportBatchItemFailures]`:
- success of the whole batch: the function returns None, {}, a dict without
  `batchItemFailures`, or `batchItemFailures` None or [];
- failure of the whole batch: the function raises or times out, returns something that
  is not a JSON object, `batchItemFailures` that is not a list, or any item that is not
  `{"itemIdentifier": <id of a message in this batch>}` (empty, None, unknown id, wrong key);
- otherwise exactly the listed messages failed and the others succeeded.
Without the flag the return value is ignored: only an exception or timeout fails the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BatchVerdict:
    succeeded: tuple[str, ...]  # message ids to delete
    failed: tuple[str, ...]  # message ids left to reappear after their visibility timeout
    reason: str = ""  # why the whole batch failed, when it did

    @property
    def total(self) -> int:
        return len(self.succeeded) + len(self.failed)

    def describe(self) -> str:
        """The outcome column of the invocation log line."""
        if not self.failed:
            return "ok"
        if not self.succeeded:
            return f"batch failed ({self.reason})" if self.reason else "batch failed"
        return f"batch partial {len(self.failed)} of {self.total} failed"


def judge_batch(
    message_ids: Sequence[str],
    *,
    invocation_ok: bool,
    value: Any,
    report_batch_item_failures: bool,
    error: str = "",
) -> BatchVerdict:
    ids = tuple(message_ids)
    if not invocation_ok:
        return BatchVerdict((), ids, error or "function error")
    if not report_batch_item_failures or value is None:
        return BatchVerdict(ids, ())
    if not isinstance(value, dict):
        return BatchVerdict((), ids, f"response is not a JSON object: {value!r:.80}")
    failures = value.get("batchItemFailures")
    if failures is None or failures == []:
        return BatchVerdict(ids, ())
    if not isinstance(failures, list):
        return BatchVerdict((), ids, "batchItemFailures is not a list")
    failed: list[str] = []
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or not identifier:
            return BatchVerdict((), ids, f"invalid batch item failure {item!r:.80}")
        if identifier not in ids:
            return BatchVerdict((), ids, f"itemIdentifier {identifier!r} is not in the batch")
        if identifier not in failed:
            failed.append(identifier)
    return BatchVerdict(tuple(i for i in ids if i not in failed), tuple(failed))
