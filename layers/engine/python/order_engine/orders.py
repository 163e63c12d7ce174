"""The order state machine: statuses, the transition table and the pipeline steps.

The table is data, and tests check the graph itself (one initial state, nothing
leaves a terminal state, every state reaches a terminal one).
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"  # accepted, waiting for the router
    ROUTING = "routing"  # both venues quoted, the best route chosen
    BUILDING = "building"  # the signed transaction is built (its signature is fixed)
    SUBMITTED = "submitted"  # the transaction was sent to the venue
    CONFIRMED = "confirmed"  # the swap landed; executed price known
    FAILED = "failed"  # terminal, with a reason


INITIAL = Status.PENDING

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.ROUTING, Status.FAILED}),
    Status.ROUTING: frozenset({Status.BUILDING, Status.FAILED}),
    Status.BUILDING: frozenset({Status.SUBMITTED, Status.FAILED}),
    Status.SUBMITTED: frozenset({Status.CONFIRMED, Status.FAILED}),
    Status.CONFIRMED: frozenset(),
    Status.FAILED: frozenset(),
}

TERMINAL = frozenset(status for status, targets in TRANSITIONS.items() if not targets)

# The happy path, in order; its index tells whether one status comes before another.
HAPPY_PATH: tuple[Status, ...] = (
    Status.PENDING,
    Status.ROUTING,
    Status.BUILDING,
    Status.SUBMITTED,
    Status.CONFIRMED,
)


def is_legal(from_status: Status, to_status: Status) -> bool:
    return to_status in TRANSITIONS[from_status]


def progress(status: Status) -> int:
    """How far along the pipeline `status` is; terminal states rank past everything."""
    return len(HAPPY_PATH) if status in TERMINAL else HAPPY_PATH.index(status)


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
        return TRANSITIONS_BY_STEP[self]

    @property
    def next(self) -> Step | None:
        """The step whose message the applied transition enqueues."""
        return _NEXT_STEP.get(self)


_STEP_FROM = {
    Step.ROUTE: Status.PENDING,
    Step.BUILD: Status.ROUTING,
    Step.SUBMIT: Status.BUILDING,
    Step.CONFIRM: Status.SUBMITTED,
}
TRANSITIONS_BY_STEP = {
    Step.ROUTE: Status.ROUTING,
    Step.BUILD: Status.BUILDING,
    Step.SUBMIT: Status.SUBMITTED,
    Step.CONFIRM: Status.CONFIRMED,
}
_NEXT_STEP = {Step.ROUTE: Step.BUILD, Step.BUILD: Step.SUBMIT, Step.SUBMIT: Step.CONFIRM}


def step_for(status: Status) -> Step | None:
    """The step that moves an order on from `status` (None when terminal)."""
    return next((step for step in Step if step.from_status == status), None)
