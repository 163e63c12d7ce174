"""The user's command list holds what users run; the benchmark's lab instruments answer
under a hidden `lab` group; the options several commands share read the same."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from order_engine_cli.main import cli


def help_of(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def commands_listed(*args: str) -> set[str]:
    text = help_of(*args).split("Commands:", 1)[1]
    return set(re.findall(r"^  (\S+)", text, flags=re.MULTILINE))


def test_the_users_command_list_holds_no_lab_instrument() -> None:
    listed = commands_listed()
    assert {"up", "demo", "keys", "dlq", "migrate", "bench"} <= listed
    assert not listed & {"bench-sqs", "cpu-split", "lab"}, listed
    assert "--cpu-split" not in help_of("bench")


def test_the_lab_instruments_answer_under_lab() -> None:
    assert commands_listed("lab") == {"bench-sqs", "cpu-split", "watch-scale"}
    assert "--delete-linger" in help_of("lab", "bench-sqs")
    assert "--stack-concurrency" in help_of("lab", "cpu-split")


@pytest.mark.parametrize("command", [("up",), ("bench",), ("lab", "cpu-split")])
def test_every_sqs_option_names_the_same_backends(command: tuple[str, ...]) -> None:
    text = " ".join(help_of(*command).split())
    assert (
        "ministack (a local MiniStack server, installed into its own venv on first use), moto"
        in text
    )


@pytest.mark.parametrize("command", [("bench",), ("demo",), ("lab", "cpu-split")])
def test_every_api_key_option_reads_the_same_variable(command: tuple[str, ...]) -> None:
    assert "[env: ORDER_ENGINE_API_KEY]" in help_of(*command)
