"""`python -m local_runtime.sandbox_cost [TEMPLATE]`: what a sandbox costs, measured.

Prints, for each function of the template (started as the runtime starts them, but
with no servers, pollers or schedules): the cold start of a sandbox in ms (the fork,
the function's environment, the import of its handler) and the memory of the warm
process (RSS, and PSS: its share of pages shared with the other sandboxes). Then the
overhead of one invocation: a handler that returns its event at once, called through a
warm sandbox, against the same call in this process, with an SQS event of ten 1 KB
records (what a queue-driven invocation sends and gets back).

    .venv/bin/python -m local_runtime.sandbox_cost template.yaml \\
        --parameter DatabaseUrl=postgresql://localhost/none --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from local_runtime.function_sandboxes import make_functions
from local_runtime.functions import InFlight
from local_runtime.options import RuntimeOptions
from local_runtime.runtime import LocalRuntime
from local_runtime.specs import FunctionSpec

ECHO = "def handler(event, context):\n    return event\n"


def memory_kb(pid: int) -> tuple[int, int]:
    """RSS and PSS of a process, in kB (Linux /proc)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return fields["Rss"], fields["Pss"]


def sqs_event(records: int = 10, body_bytes: int = 1024) -> dict[str, Any]:
    body = "x" * body_bytes
    return {
        "Records": [
            {"messageId": f"m{i}", "receiptHandle": "r" * 200, "body": body, "attributes": {}}
            for i in range(records)
        ]
    }


def measure_template(template: Path, parameters: dict[str, str], rounds: int) -> None:
    options = RuntimeOptions(
        http_port=0,
        ws_port=0,
        parameters=parameters,
        preload=False,
        pollers=False,
        schedules=False,
        announce=False,
    )
    with LocalRuntime(template, options) as runtime:
        print(f"{'function':<28} {'cold start ms':>14} {'RSS MB':>8} {'PSS MB':>8}")
        for function in runtime.functions.values():
            starts, rss, pss = [], [], []
            for _ in range(rounds):
                sandbox = function.sandboxes.take()
                starts.append(sandbox.cold_start_ms)
                resident, proportional = memory_kb(sandbox.pid)
                rss.append(resident / 1024)
                pss.append(proportional / 1024)
                function.sandboxes.discard(sandbox)
            print(
                f"{function.name:<28} {statistics.median(starts):>14.0f} "
                f"{statistics.median(rss):>8.1f} {statistics.median(pss):>8.1f}"
            )


def measure_overhead(calls: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "echo.py").write_text(ECHO)
        spec = FunctionSpec(
            "Echo", "echo", "arn:aws:lambda:us-east-1:1:function:echo", Path(folder), "echo.handler"
        )
        (function,) = make_functions(
            [spec],
            {"Echo": dict(os.environ)},
            InFlight(),
            correlation_keys=(),
            websocket_endpoint=None,
            runtime_cap=1,
        ).values()
        try:
            event = sqs_event()
            function.invoke(event)  # the cold start, not counted
            started = time.perf_counter()
            for _ in range(calls):
                function.invoke(event)
            through_sandbox = (time.perf_counter() - started) / calls
            namespace: dict[str, Any] = {}
            exec(ECHO, namespace)  # noqa: S102 (our own one-line handler)
            started = time.perf_counter()
            for _ in range(calls):
                namespace["handler"](event, None)
            in_process = (time.perf_counter() - started) / calls
        finally:
            function.sandboxes.stop(1)
    overhead_ms = (through_sandbox - in_process) * 1000
    print(
        f"per invocation, an SQS event of 10 x 1 KB there and back ({calls} calls): "
        f"{through_sandbox * 1000:.3f} ms through a warm sandbox, "
        f"{in_process * 1000:.4f} ms in process: overhead {overhead_ms:.3f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_runtime.sandbox_cost")
    parser.add_argument("template", type=Path, nargs="?", help="a SAM template.yaml")
    parser.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--rounds", type=int, default=3, help="cold starts per function")
    parser.add_argument("--calls", type=int, default=2000, help="invocations timed")
    args = parser.parse_args(argv)
    if args.template is not None:
        parameters = dict(pair.split("=", 1) for pair in args.parameter)
        measure_template(args.template, parameters, max(1, args.rounds))
    measure_overhead(max(1, args.calls))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
