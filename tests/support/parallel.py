"""How `pytest -n N` (pytest-xdist, as `make test` runs it) shares the suite out.

The suite mostly waits (stacks starting, sockets, sleeps), so workers overlap the waits.
Each worker is a process with its own session fixtures: its own database on the one
embedded PostgreSQL (pgserver shares a server between processes), its own stacks.

- A unit of work is a test module, as with `--dist loadfile`: module fixtures (a toy
  runtime per SQS backend, …) start once. A folder in `ONE_UNIT` is one unit as a
  whole: its tests speak for one package fixture and its last module checks what all
  the others left (tests/e2e/bad_input: mallory's rows).
- Units go out in collection order, never reordered by size (xdist's default for
  loadscope): so each worker runs its tests in the order a sequential run does, which
  the session stacks rely on. The in-process handler stacks set the process's
  environment one inside the other (tests/support/handler_stack.py: the fault suite's,
  then the handler tests'), and the end-to-end runtime starts before either.
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadScopeScheduling

ONE_UNIT = ("tests/e2e/bad_input/",)


class SuiteScheduling(LoadScopeScheduling):
    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        # Read by LoadScopeScheduling.schedule: keep the collection's order.
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        for folder in ONE_UNIT:
            if nodeid.startswith(folder):
                return folder
        return nodeid.split("::", 1)[0]
