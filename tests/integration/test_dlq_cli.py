"""`order-engine dlq` against real SQS (a moto server) and real PostgreSQL.

Messages reach the dead-letter queues the way SQS parks them: received
maxReceiveCount times without being deleted, then moved by SQS itself on the next
receive. Each test has a stack (queue-name prefix) of its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from local_runtime.localstack_host import find_python312, start_localstack
from order_engine.orders import Status
from order_engine.records import Order
from order_engine.store import Store
from order_engine_cli import running
from order_engine_cli.main import cli
from tests.support.aws import create_queues, free_port, moto_server

ROOT = Path(__file__).resolve().parents[2]
TOPICS = ("route", "build", "submit", "confirm", "notify")
MAX_RECEIVES = 5


def step_body(order_id: str, step: str = "route") -> str:
    return json.dumps({"v": 1, "orderId": order_id, "step": step})


@dataclass
class Stack:
    """The template's queues under one prefix, and the CLI pointed at them."""

    sqs: Any
    endpoint: str
    name: str
    urls: dict[str, str]

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        where = ["--endpoint-url", self.endpoint, "--stack-name", self.name]
        return invoke("dlq", *args, *where, env=env)

    def park(self, topic: str, *bodies: str) -> None:
        """Put bodies on `topic`'s queue and fail them until SQS dead-letters them."""
        url = self.urls[topic]
        for body in bodies:
            self.sqs.send_message(QueueUrl=url, MessageBody=body)
        for _ in range(MAX_RECEIVES + 3):
            if not self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0
            ).get("Messages"):
                break
        assert self.depth(topic) == (0, 0)
        assert self.depth(f"{topic}-dlq")[0] >= len(bodies)

    def depth(self, queue: str) -> tuple[int, int]:
        """(visible, in flight) of a queue: `route`, `route-dlq`…"""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.urls[queue],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    def receive(self, queue: str) -> list[dict[str, Any]]:
        """Everything on a queue, received once (hidden for 30 s afterwards)."""
        messages: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(
            QueueUrl=self.urls[queue],
            MaxNumberOfMessages=10,
            VisibilityTimeout=30,
            MessageSystemAttributeNames=["All"],
        ).get("Messages"):
            messages += batch
        return messages


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    # Wide enough that rich never folds an order id.
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "220", **(env or {})})


@pytest.fixture(scope="module")
def sqs_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


def new_stack(endpoint: str, credentials: str = "testing") -> Stack:
    sqs = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=credentials,
        aws_secret_access_key=credentials,
    )
    name = f"t{uuid.uuid4().hex[:8]}"
    created = create_queues(sqs, [f"{name}-{topic}" for topic in TOPICS])
    urls = {key.removeprefix(f"{name}-"): url for key, url in created.items()}
    return Stack(sqs, endpoint, name, urls)


@pytest.fixture
def stack(sqs_endpoint: str) -> Stack:
    return new_stack(sqs_endpoint)


def row(output: str, first_cell: str) -> list[str]:
    """The cells of the table row that starts with `first_cell`."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{output}")


def ids() -> list[str]:
    return [str(uuid.uuid4()) for _ in range(3)]


# --- list -----------------------------------------------------------------------------


def test_list_shows_each_dead_letter_queue_with_its_count_and_oldest_message(
    stack: Stack,
) -> None:
    a, b, c = ids()
    stack.park("route", step_body(a), step_body(b))
    stack.park("build", step_body(c, "build"))

    result = stack.cli("list")

    assert result.exit_code == 0, result.output
    route = row(result.output, f"{stack.name}-route-dlq")
    assert route[1:4] == [f"{stack.name}-route", "2", "0"]
    assert "ago" in route[4]
    assert row(result.output, f"{stack.name}-build-dlq")[2] == "1"
    assert row(result.output, f"{stack.name}-submit-dlq")[2:] == ["0", "0", "—"]
    assert len([line for line in result.output.splitlines() if "-dlq " in line]) == len(TOPICS)


def test_list_counts_messages_someone_is_looking_at_as_in_flight(stack: Stack) -> None:
    stack.park("submit", step_body(str(uuid.uuid4()), "submit"))
    stack.sqs.receive_message(QueueUrl=stack.urls["submit-dlq"], VisibilityTimeout=60)

    cells = row(stack.cli("list").output, f"{stack.name}-submit-dlq")

    assert cells[2:4] == ["1", "1"]


# --- show -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["route", "{stack}-route", "route-dlq", "{stack}-route-dlq"])
def test_show_decodes_envelopes_shows_poison_raw_and_deletes_nothing(
    stack: Stack, name: str
) -> None:
    order_id = str(uuid.uuid4())
    stack.park("route", step_body(order_id), "not json at all")

    result = stack.cli("show", name.format(stack=stack.name))

    assert result.exit_code == 0, result.output
    good = row(result.output, row_id(result.output, order_id))
    assert good[1:3] == [order_id, "route"]
    assert int(good[3]) > MAX_RECEIVES  # the receives that parked it, and this look
    assert "ago" in good[4]
    assert "poison: message body is not JSON" in result.output
    assert "'not json at all'" in result.output
    assert stack.depth("route-dlq") == (2, 0)  # nothing deleted, nothing left hidden


def row_id(output: str, order_id: str) -> str:
    """The message-id cell of the row that shows `order_id`."""
    line = next(line for line in output.splitlines() if order_id in line)
    return line.strip("│ ").split("│")[0].strip()


def test_show_reads_each_orders_status_and_last_error_from_postgres(
    stack: Stack, store: Store, new_order: Callable[..., Order], migrated_url: str
) -> None:
    order = new_order()
    store.record_failed_attempt(order.id, Status.PENDING, "raydium: quote timed out")
    stack.park("route", step_body(str(order.id)))

    result = stack.cli("show", "route", "--database-url", migrated_url)

    cells = row(result.output, row_id(result.output, str(order.id)))
    assert cells[5:] == ["pending", "raydium: quote timed out"]


def test_show_without_a_reachable_database_still_shows_the_messages(stack: Stack) -> None:
    order_id = str(uuid.uuid4())
    stack.park("route", step_body(order_id))
    down = f"postgresql://orders@127.0.0.1:{free_port()}/orders?connect_timeout=1"

    result = stack.cli("show", "route", "--database-url", down)

    assert result.exit_code == 0, result.output
    assert row(result.output, row_id(result.output, order_id))[5:] == ["—", "—"]
    assert "Order status and last error not shown" in result.output


def test_an_unknown_queue_is_an_error_that_lists_the_dead_letter_queues(stack: Stack) -> None:
    result = stack.cli("show", "payments")

    assert result.exit_code == 1
    assert "no dead-letter queue 'payments'" in result.output
    assert f"{stack.name}-route-dlq (of {stack.name}-route)" in result.output


# --- replay ---------------------------------------------------------------------------


def test_replay_sends_every_message_back_as_a_fresh_message(stack: Stack) -> None:
    routes, builds = ids(), ids()[:2]
    stack.park("route", *map(step_body, routes))
    stack.park("build", *(step_body(order_id, "build") for order_id in builds))

    result = stack.cli("replay", "--all")

    assert result.exit_code == 0, result.output
    assert row(result.output, f"{stack.name}-route-dlq")[1:] == [
        f"{stack.name}-route", "3", "0", "0", "0"
    ]  # fmt: skip
    assert row(result.output, f"{stack.name}-build-dlq")[2] == "2"
    replayed = stack.receive("route")
    assert sorted(json.loads(m["Body"])["orderId"] for m in replayed) == sorted(routes)
    # A new message: received once so far, so it is not bounced back (floci #900).
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in replayed} == {"1"}
    assert len(stack.receive("build")) == 2
    assert stack.depth("route-dlq") == stack.depth("build-dlq") == (0, 0)


def test_a_message_whose_send_fails_stays_in_the_dlq_and_the_others_move(stack: Stack) -> None:
    # SQS refuses a body larger than the queue's MaximumMessageSize: a real send failure.
    stack.sqs.set_queue_attributes(
        QueueUrl=stack.urls["route"], Attributes={"MaximumMessageSize": "1024"}
    )
    big, small_a, small_b = ids()
    oversized = json.dumps({"v": 1, "orderId": big, "step": "route", "pad": "x" * 2000})
    stack.sqs.send_message(QueueUrl=stack.urls["route-dlq"], MessageBody=oversized)
    stack.park("route", step_body(small_a), step_body(small_b))

    result = stack.cli("replay", "route")

    assert result.exit_code == 1
    assert row(result.output, f"{stack.name}-route-dlq")[2:] == ["2", "0", "1", "1"]
    assert f"{stack.name}-route refused it" in result.output
    assert sorted(json.loads(m["Body"])["orderId"] for m in stack.receive("route")) == sorted(
        [small_a, small_b]
    )
    assert stack.depth("route-dlq") == (1, 0)  # still there, and visible again at once
    assert json.loads(stack.receive("route-dlq")[0]["Body"])["orderId"] == big


def test_replay_with_order_id_moves_only_that_order_and_releases_the_rest_at_once(
    stack: Stack,
) -> None:
    a, b, c = ids()
    stack.park("route", step_body(a), step_body(b), step_body(c))

    result = stack.cli("replay", "route", "--order-id", b)

    assert result.exit_code == 0, result.output
    assert row(result.output, f"{stack.name}-route-dlq")[2:4] == ["1", "2 (2 other orders)"]
    assert [json.loads(m["Body"])["orderId"] for m in stack.receive("route")] == [b]
    assert stack.depth("route-dlq") == (2, 0)  # not hidden for the visibility timeout


def test_replay_limit_moves_at_most_that_many(stack: Stack) -> None:
    stack.park("confirm", *(step_body(str(uuid.uuid4()), "confirm") for _ in range(5)))

    result = stack.cli("replay", "confirm", "--limit", "2")

    assert result.exit_code == 0, result.output
    assert row(result.output, f"{stack.name}-confirm-dlq")[2] == "2"
    assert stack.depth("confirm") == (2, 0)
    assert stack.depth("confirm-dlq") == (3, 0)


def test_replay_dry_run_changes_nothing_and_says_what_would_move(stack: Stack) -> None:
    a, b, _ = ids()
    stack.park("route", step_body(a), step_body(b), "\x01poison")

    result = stack.cli("replay", "--all", "--dry-run")

    assert result.exit_code == 0, result.output
    assert "dry run: nothing changed" in result.output
    assert row(result.output, f"{stack.name}-route-dlq")[2:] == ["2", "1 (1 poison)", "0", "3"]
    assert a in result.output and b in result.output
    assert stack.depth("route") == (0, 0)
    assert stack.depth("route-dlq") == (3, 0)


def test_poison_stays_in_the_dlq_unless_asked_for(stack: Stack) -> None:
    stack.park("notify", "not an envelope")

    assert row(stack.cli("replay", "notify").output, f"{stack.name}-notify-dlq")[2] == "0"
    assert stack.depth("notify-dlq") == (1, 0)
    assert (
        row(stack.cli("replay", "notify", "--include-poison").output, f"{stack.name}-notify-dlq")[2]
        == "1"
    )
    assert stack.depth("notify") == (1, 0)


def test_replaying_twice_changes_nothing_more(stack: Stack) -> None:
    a, b, _ = ids()
    stack.park("route", step_body(a))
    stack.park("submit", step_body(b, "submit"))

    first = stack.cli("replay", "--all")
    second = stack.cli("replay", "--all")

    assert first.exit_code == second.exit_code == 0, second.output
    assert row(second.output, f"{stack.name}-route-dlq")[2:] == ["0", "0", "0", "0"]
    assert row(second.output, f"{stack.name}-submit-dlq")[2:] == ["0", "0", "0", "0"]
    assert stack.depth("route") == stack.depth("submit") == (1, 0)


def test_server_side_replay_falls_back_to_client_side_where_sqs_has_no_move_tasks(
    stack: Stack,
) -> None:
    stack.park("build", step_body(str(uuid.uuid4()), "build"))

    result = stack.cli("replay", "build", "--server-side")

    assert result.exit_code == 0, result.output
    assert "no message move tasks" in result.output
    assert row(result.output, f"{stack.name}-build-dlq")[2] == "1"
    assert stack.depth("build") == (1, 0)


@pytest.mark.localstack
@pytest.mark.skipif(find_python312() is None, reason="LocalStack needs a Python >= 3.12")
@pytest.mark.timeout(900)  # the first run builds LocalStack's venv
def test_server_side_replay_on_localstack_uses_a_message_move_task(tmp_path: Path) -> None:
    process, endpoint = start_localstack(ROOT / ".data" / "localstack-venv", tmp_path / "state")
    try:
        stack = new_stack(endpoint, credentials="test")
        routes = ids()
        stack.park("route", *map(step_body, routes))

        result = stack.cli("replay", "--all", "--server-side")

        assert result.exit_code == 0, result.output
        assert "no message move tasks" not in result.output
        assert row(result.output, f"{stack.name}-route-dlq")[2:] == ["3", "0", "0", "0"]
        replayed = stack.receive("route")
        assert sorted(json.loads(m["Body"])["orderId"] for m in replayed) == sorted(routes)
    finally:
        process.stop()


def test_replay_needs_one_queue_or_all(stack: Stack) -> None:
    assert "name one QUEUE, or pass --all" in stack.cli("replay").output
    assert (
        "does not combine" in stack.cli("replay", "--all", "--server-side", "--limit", "1").output
    )


# --- where SQS is -------------------------------------------------------------------


@pytest.fixture
def no_endpoint_hints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No endpoint in the environment, and a run directory of our own."""
    for variable in ("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(running, "RUN_DIR", tmp_path / "run")
    return tmp_path / "run"


def test_without_any_endpoint_the_error_names_the_flag(no_endpoint_hints: Path) -> None:
    result = invoke("dlq", "list")

    assert result.exit_code == 2
    assert "No `order-engine up` is running" in result.output
    assert "--endpoint-url" in result.output


def test_the_running_up_is_found_from_its_state_file_and_stale_ones_are_ignored(
    stack: Stack, no_endpoint_hints: Path
) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    no_endpoint_hints.mkdir()
    alive = {"pid": os.getpid(), "sqs": stack.endpoint, "stack_name": stack.name}
    stale = {"pid": int(finished.stdout), "sqs": "http://127.0.0.1:1", "stack_name": "x"}
    for state in (alive, stale):
        common = {"region": "us-east-1", "http": "http://127.0.0.1:3000", "database": None}
        path = no_endpoint_hints / f"{state['pid']}.json"
        path.write_text(json.dumps({**state, **common, "started_at": "2026-01-01T00:00:00"}))

    result = invoke("dlq", "list")

    assert result.exit_code == 0, result.output
    assert f"`order-engine up`, pid {os.getpid()}" in result.output
    row(result.output, f"{stack.name}-route-dlq")
    assert not (no_endpoint_hints / f"{stale['pid']}.json").exists()


def test_the_endpoint_variable_is_used_and_named(stack: Stack, no_endpoint_hints: Path) -> None:
    result = invoke(
        "dlq", "list", "--stack-name", stack.name, env={"AWS_ENDPOINT_URL_SQS": stack.endpoint}
    )

    assert result.exit_code == 0, result.output
    assert "from $AWS_ENDPOINT_URL_SQS" in result.output


def test_an_unreachable_endpoint_is_named_in_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = invoke("dlq", "list", "--endpoint-url", url)

    assert result.exit_code == 1
    assert f"cannot reach SQS at {url}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [[], ["list"], ["show"], ["replay"]])
def test_every_help_text_has_an_example(command: list[str]) -> None:
    result = invoke("dlq", *command, "--help")

    assert result.exit_code == 0
    assert re.search(r"Examples?:\n\s+order-engine dlq ", result.output)
