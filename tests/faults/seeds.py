"""The fault suite's seed: one per run, printed in the header, and pinned seeds.

Every fault scenario draws its randomness (order sizes, the venues' price streams and
swap fates, which messages are duplicated, reordered or crashed on) from one seed.

- `--fault-seed N` or `FAULT_SEED=N` replays a run exactly; without either, the run
  draws a seed and prints it in pytest's header, in the summary at the end (`-q` has
  no header) and under every failure.
- A seed that once failed is pinned on the test that failed with it:
  `@pytest.mark.pinned_seeds(1234)`. The test then runs with the run's seed
  (id `run-seed`) and with every pinned one (id `pinned-1234`), every time.

The hooks are imported by tests/conftest.py, which pytest loads before it prints the
header (a conftest.py in tests/faults/ is loaded too late for that). Under pytest-xdist
the controller draws the seed and hands it to every worker, and hears back whether any
of them used it.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

SEED_VARIABLE = "FAULT_SEED"
_SEED_KEY = pytest.StashKey[int]()
_USED_KEY = pytest.StashKey[bool]()
_USED_OUTPUT = "fault_seed_used"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fault-seed",
        type=int,
        default=None,
        help=f"seed of the fault suite (tests/faults) [env: {SEED_VARIABLE}; default: random]",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "pinned_seeds(*seeds): fault-suite seeds that once failed; the test runs with "
        "each of them besides the run's own seed",
    )


def run_seed(config: pytest.Config) -> int:
    """This run's seed: --fault-seed, else $FAULT_SEED, else a fresh random one."""
    if _SEED_KEY not in config.stash:
        given = getattr(config, "workerinput", {}).get(SEED_VARIABLE)  # an xdist worker
        if given is None:
            given = config.getoption("--fault-seed", default=None)
        if given is None and os.environ.get(SEED_VARIABLE):
            given = int(os.environ[SEED_VARIABLE])
        config.stash[_SEED_KEY] = (
            given if given is not None else random.SystemRandom().randrange(1, 2**31)
        )
    return config.stash[_SEED_KEY]


def use_seed(config: pytest.Config) -> int:
    """The run's seed, for a test about to be generated with it (see the summary)."""
    config.stash[_USED_KEY] = True
    return run_seed(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(xdist, controller) Each worker runs with the seed the header shows."""
    node.workerinput[SEED_VARIABLE] = run_seed(node.config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)  # an xdist worker
    if workeroutput is not None:
        workeroutput[_USED_OUTPUT] = session.config.stash.get(_USED_KEY, False)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """(xdist, controller) A worker that used the seed gets it into the summary."""
    if getattr(node, "workeroutput", {}).get(_USED_OUTPUT):
        node.config.stash[_USED_KEY] = True


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    # Again at the end: `pytest -q` prints no header.
    if config.stash.get(_USED_KEY, False):
        seed = run_seed(config)
        terminalreporter.write_sep(
            "-", f"fault suite seed {seed}: replay with {SEED_VARIABLE}={seed}"
        )


def pytest_report_header(config: pytest.Config) -> str:
    seed = run_seed(config)
    return f"fault suite seed: {seed} (replay this run: {SEED_VARIABLE}={seed})"


def reproduce_hint(seed: int, nodeid: str) -> str:
    return (
        f"fault seed {seed}: replay with\n"
        f"  {SEED_VARIABLE}={seed} .venv/bin/pytest '{nodeid}'\n"
        "and, once understood, pin it on the test: @pytest.mark.pinned_seeds("
        f"{seed})"
    )
