"""The transition table as a graph: the properties every other guarantee leans on."""

from __future__ import annotations

import itertools

from order_engine.orders import (
    CANCELLABLE,
    HAPPY_PATH,
    INITIAL,
    TERMINAL,
    TRANSITIONS,
    Status,
    Step,
    is_legal,
    step_for,
)


def test_every_status_has_a_row_in_the_table() -> None:
    assert set(TRANSITIONS) == set(Status)


def test_there_is_exactly_one_initial_state() -> None:
    targets = set().union(*TRANSITIONS.values())
    sources_never_entered = [status for status in Status if status not in targets]
    assert sources_never_entered == [INITIAL]


def test_nothing_leaves_a_terminal_state() -> None:
    assert {Status.CONFIRMED, Status.FAILED, Status.EXPIRED, Status.CANCELLED} == TERMINAL
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()


def test_every_state_can_reach_a_terminal_state() -> None:
    def reaches_terminal(status: Status, seen: frozenset[Status]) -> bool:
        if status in TERMINAL:
            return True
        return any(
            reaches_terminal(target, seen | {status})
            for target in TRANSITIONS[status]
            if target not in seen
        )

    assert all(reaches_terminal(status, frozenset()) for status in Status)


def test_every_non_terminal_state_can_fail() -> None:
    for status in set(Status) - TERMINAL:
        assert is_legal(status, Status.FAILED)


def test_the_happy_path_is_a_path_through_the_table() -> None:
    for before, after in itertools.pairwise(HAPPY_PATH):
        assert is_legal(before, after)
    assert not is_legal(Status.PENDING, Status.SUBMITTED), "no state may be skipped"
    assert not is_legal(Status.CONFIRMED, Status.FAILED), "a confirmed swap cannot fail"


def test_each_step_moves_an_order_by_exactly_one_legal_transition() -> None:
    for step in Step:
        assert is_legal(step.from_status, step.to_status)
        assert step_for(step.from_status) is step
    chain = [Step.ROUTE]
    while (following := chain[-1].next) is not None:
        chain.append(following)
    assert [step.to_status for step in chain] == list(HAPPY_PATH[1:])
    assert step_for(Status.CONFIRMED) is None


def test_an_order_is_cancellable_exactly_until_its_transaction_is_built() -> None:
    # A waiting limit order has no transaction yet either.
    assert {Status.PENDING, Status.WATCHING, Status.ROUTING} == CANCELLABLE
    assert not is_legal(Status.BUILDING, Status.CANCELLED), "a built swap may be on its way"
    assert Status.CANCELLED in TERMINAL
    assert step_for(Status.CANCELLED) is None
