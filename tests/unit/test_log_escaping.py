"""A client's text cannot forge a log line: control characters in any logged field (the
engine's lines, the local runtime's correlation ids) come out escaped, on one line."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from local_runtime.functions import correlation_ids
from order_engine.observability import escape_control_characters, escape_control_characters_in_logs

FORGED = "2026-12-04 13:00:00 INFO order 1 confirmed"


@pytest.fixture
def escaping() -> Iterator[None]:
    factory = logging.getLogRecordFactory()
    escape_control_characters_in_logs()
    yield
    logging.setLogRecordFactory(factory)


def logged_lines(logger_name: str, message: str, *args: object) -> list[str]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info(message, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().splitlines()


@pytest.mark.parametrize("separator", ["\n", "\r", "\r\n", "\x85", "\x1b[2K\r", "\x00"])
def test_a_field_with_a_line_break_stays_on_one_line(escaping: None, separator: str) -> None:
    lines = logged_lines("order_engine.test", "subscribe to %s refused", f"abc{separator}{FORGED}")
    assert len(lines) == 1
    assert lines[0].startswith("INFO subscribe to abc\\")
    assert lines[0].endswith(f"{FORGED} refused")


def test_every_logger_is_covered_not_only_the_engines(escaping: None) -> None:
    assert logged_lines("some.library", "%s", f"x\n{FORGED}") == [f"INFO x\\n{FORGED}"]


def test_escapes_are_readable() -> None:
    assert escape_control_characters("a\nb\tc\x1bd\x85é") == "a\\nb\\tc\\x1bd\\x85é"


def test_the_runtimes_correlation_ids_are_escaped() -> None:
    event = {"body": '{"action": "subscribe", "orderId": "abc\\nFORGED line"}'}
    assert correlation_ids(event, ["orderId"]) == ["abc\\nFORGED line"]
