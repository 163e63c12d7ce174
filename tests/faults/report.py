"""What the checker reads besides the database, and what it answers.

`Delivery` is one step delivery as a scenario's recorder saw it, `DeadLetter` one
message found in a dead-letter queue, and `Report` the checker's verdict: failures by
invariant, and observations (duplicates, retries, resends) that are not failures.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Delivery:
    """One step message handled by a worker, as the scenario's recorder saw it.

    `result`: advanced | failed | skipped | retry | crashed | error. `applied` counts
    the transitions it committed, `swaps` the venue submissions that were a first.
    """

    order_id: str
    step: str
    result: str
    applied: int = 0
    swaps: int = 0

    @property
    def duplicate(self) -> bool:
        return self.result == "skipped"


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str
    body: str


@dataclass
class Report:
    seed: int | None
    orders: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    # failures, by invariant
    lost: list[str] = field(default_factory=list)  # I1
    illegal: list[str] = field(default_factory=list)  # I2
    swaps: list[str] = field(default_factory=list)  # I3
    harmful_duplicates: list[str] = field(default_factory=list)  # I4
    unaccounted_dead_letters: list[str] = field(default_factory=list)  # I5
    # observations (not failures)
    deliveries: int = 0
    duplicates: int = 0  # step deliveries that changed nothing
    retries: int = 0  # deliveries answered "not yet" or failed transiently
    ws_messages: int = 0
    ws_duplicates: int = 0  # events a subscriber received twice (same seq)
    dead_letters: Counter[str] = field(default_factory=Counter)  # why each is accounted for
    recovered: list[str] = field(default_factory=list)  # in the database, never acked

    @property
    def failures(self) -> dict[str, list[str]]:
        return {
            "I1 lost": self.lost,
            "I2 illegal history": self.illegal,
            "I3 more than one swap / ledger disagrees": self.swaps,
            "I4 harmful duplicates": self.harmful_duplicates,
            "I5 unaccounted dead letters": self.unaccounted_dead_letters,
        }

    @property
    def ok(self) -> bool:
        return not any(self.failures.values())

    def summary(self) -> str:
        lines = [
            f"checked {self.orders} orders ({dict(self.statuses)}), seed {self.seed}:",
            f"  {self.deliveries} step deliveries, {self.duplicates} duplicates (harmless), "
            f"{self.retries} retries",
            f"  {self.ws_messages} WebSocket messages, {self.ws_duplicates} duplicate events",
            f"  dead letters: {dict(self.dead_letters) or 'none'}",
        ]
        if self.recovered:
            lines.append(f"  {len(self.recovered)} orders created but never acknowledged")
        for name, problems in self.failures.items():
            if problems:
                lines.append(f"  {name}: {len(problems)}")
                lines += [f"    - {problem}" for problem in problems[:20]]
        return "\n".join(lines)

    def assert_ok(self) -> Report:
        assert self.ok, self.summary()
        return self
