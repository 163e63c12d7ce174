"""The order state machine: statuses, steps, and the one table that ties them together.

`PIPELINE` is the table; everything else here (the transition graph, the happy path,
each step's source, target and successor) is derived from it, so they cannot disagree.
Tests check the graph itself (one initial state, nothing leaves a terminal state, every
state reaches a terminal one).
"""

from __future__ import annotations

import itertools
import uuid
from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"  # accepted, waiting for the router
    ROUTING = "routing"  # both venues quoted, the best route chosen
    BUILDING = "building"  # the signed transaction is built (its signature is fixed)
    SUBMITTED = "submitted"  # the transaction was sent to the venue
    CONFIRMED = "confirmed"  # the swap landed; executed price known
    FAILED = "failed"  # terminal, with a reason
    WATCHING = "watching"  # a limit order waiting for its price (watch.py)
    EXPIRED = "expired"  # terminal: a limit order whose price never came before expiresAt
    CANCELLED = "cancelled"  # terminal: the owner cancelled it before its transaction was built


class Step(StrEnum):
    """A unit of work, carried by one SQS queue, that moves an order by one state."""

    ROUTE = "route"
    BUILD = "build"
    SUBMIT = "submit"
    CONFIRM = "confirm"

    @property
    def from_status(self) -> Status:
        return _STEP_FROM[self]

    @property
    def to_status(self) -> Status:
        return _STEP_TO[self]

    @property
    def next(self) -> Step | None:
        """The step whose message the applied transition enqueues."""
        return step_for(self.to_status)


# The state table: the happy path in order, each status with the step that leaves it
# (None for the end). Any non-terminal status may also fail, and FAILED is terminal.
PIPELINE: tuple[tuple[Status, Step | None], ...] = (
    (Status.PENDING, Step.ROUTE),
    (Status.ROUTING, Step.BUILD),
    (Status.BUILDING, Step.SUBMIT),
    (Status.SUBMITTED, Step.CONFIRM),
    (Status.CONFIRMED, None),
)

# The happy path, in order; its index tells whether one status comes before another.
HAPPY_PATH: tuple[Status, ...] = tuple(status for status, _ in PIPELINE)
INITIAL = HAPPY_PATH[0]

_STEP_FROM = {step: status for status, step in PIPELINE if step is not None}
_STEP_TO = {step: target for (_, step), (target, _) in itertools.pairwise(PIPELINE) if step}

# Ways off the happy path besides failing. A limit order waits between pending and
# routing: the route step starts its watch (pending -> watching) instead of routing it,
# and once the price watch finds its limit met, the route step moves it on
# (watching -> routing). No step leaves `watching`: only the watch does, so the sweeper
# never re-drives a waiting order. An order may be cancelled until its transaction is
# built (once it is, the swap may already be on its way).
OFF_PATH: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.WATCHING, Status.CANCELLED}),
    Status.WATCHING: frozenset({Status.ROUTING, Status.EXPIRED, Status.CANCELLED, Status.FAILED}),
    Status.ROUTING: frozenset({Status.CANCELLED}),
    Status.EXPIRED: frozenset(),
    Status.CANCELLED: frozenset(),
}

TRANSITIONS: dict[Status, frozenset[Status]] = {
    **{_STEP_FROM[step]: frozenset({target, Status.FAILED}) for step, target in _STEP_TO.items()},
    HAPPY_PATH[-1]: frozenset(),
    Status.FAILED: frozenset(),
}
for _status, _targets in OFF_PATH.items():
    TRANSITIONS[_status] = TRANSITIONS.get(_status, frozenset()) | _targets

# Where each status stands, for telling a stale message from an early one: watching
# comes after pending and before routing.
_RANK: tuple[Status, ...] = (HAPPY_PATH[0], Status.WATCHING, *HAPPY_PATH[1:])

TERMINAL = frozenset(status for status, targets in TRANSITIONS.items() if not targets)
# Read off the table, so a status given a way into CANCELLED is cancellable at once.
CANCELLABLE = frozenset(
    status for status, targets in TRANSITIONS.items() if Status.CANCELLED in targets
)


def is_legal(from_status: Status, to_status: Status) -> bool:
    return to_status in TRANSITIONS[from_status]


def progress(status: Status) -> int:
    """How far along the pipeline `status` is; terminal states rank past everything."""
    return len(_RANK) if status in TERMINAL else _RANK.index(status)


def step_for(status: Status) -> Step | None:
    """The step that moves an order on from `status` (None when terminal)."""
    return _STEP_LEAVING.get(status)


_STEP_LEAVING = {status: step for step, status in _STEP_FROM.items()}


def as_order_id(raw: object) -> uuid.UUID | None:
    """`raw` (from a URL, a WebSocket message, a queue message) as an order id, or None
    when it is not one. Each boundary parses once, and inside the engine an order id is
    a UUID, never checked again."""
    if isinstance(raw, uuid.UUID):
        return raw
    if not isinstance(raw, str):
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None
