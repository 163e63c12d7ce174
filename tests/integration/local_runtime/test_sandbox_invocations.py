"""Invocations in real sandbox processes, without the rest of the runtime: each
function's own modules and sys.path, the Lambda context, Timeout, errors, crashes,
concurrency and recycling."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from local_runtime import sandboxes
from local_runtime.function_code import HandlerImportError
from local_runtime.function_sandboxes import make_functions
from local_runtime.functions import InFlight, LambdaFunction
from local_runtime.processes import pid_alive
from local_runtime.reloader import Reloader
from local_runtime.sandbox_process import cached_bytecode
from local_runtime.sandboxes import SandboxBudget
from local_runtime.specs import FunctionSpec, LayerSpec


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def spec(
    code_dir: Path,
    handler: str,
    *,
    timeout: float = 3,
    layers: tuple[LayerSpec, ...] = (),
    reserved: int | None = None,
) -> FunctionSpec:
    return FunctionSpec(
        logical_id=f"F{code_dir.name}",
        function_name=f"fn-{code_dir.name}",
        arn=f"arn:aws:lambda:us-east-1:1:function:fn-{code_dir.name}",
        code_dir=code_dir,
        handler=handler,
        timeout=timeout,
        layers=layers,
        reserved_concurrency=reserved,
    )


@pytest.fixture
def sandboxed() -> Iterator[list[LambdaFunction]]:
    """Functions made by `start(...)`; their sandboxes are stopped after the test."""
    made: list[LambdaFunction] = []
    yield made
    for function in made:
        function.sandboxes.stop(1)


def start(
    made: list[LambdaFunction],
    *specs: FunctionSpec,
    cap: int = 10,
    budget: SandboxBudget | None = None,
    bytecode_cache: Path | None = None,
) -> list[LambdaFunction]:
    functions = make_functions(
        specs,
        {s.logical_id: {**os.environ} for s in specs},
        InFlight(),
        correlation_keys=(),
        websocket_endpoint=None,
        runtime_cap=cap,
        budget=budget,
        bytecode_cache=bytecode_cache,
    )
    made.extend(functions.values())
    return list(functions.values())


def test_two_functions_with_same_module_names_do_not_collide(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    for name in ("one", "two"):
        write(
            tmp_path / name,
            {
                "app.py": (
                    "from helpers import who\n"
                    "def handler(e, c):\n"
                    "    import helpers  # at call time too: CodeUri stays on sys.path\n"
                    "    return [who(), helpers.who()]\n"
                ),
                "helpers.py": f"def who():\n    return {name!r}\n",
            },
        )
    one, two = start(
        sandboxed, spec(tmp_path / "one", "app.handler"), spec(tmp_path / "two", "app.handler")
    )
    assert one.invoke({}).value == ["one", "one"]
    assert two.invoke({}).value == ["two", "two"]


def test_layers_are_on_the_path_after_the_code(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    layer = LayerSpec("Lib", write(tmp_path / "layer", {"python/sharedlib_xyz.py": "N = 7\n"}))
    write(
        tmp_path / "a", {"h.py": "import sharedlib_xyz\ndef h(e, c):\n    return sharedlib_xyz.N\n"}
    )
    (function,) = start(sandboxed, spec(tmp_path / "a", "h.h", layers=(layer,)))
    assert function.invoke({}).value == 7


def test_handlers_in_subfolders_and_bad_handlers(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    write(tmp_path / "f", {"pkg/__init__.py": "", "pkg/mod.py": "def h(e, c):\n    return 1\n"})
    good, missing_attribute, missing_module = start(
        sandboxed,
        spec(tmp_path / "f", "pkg/mod.h"),
        spec(write(tmp_path / "g", {"pkg/__init__.py": "", "pkg/mod.py": ""}), "pkg/mod.nope"),
        spec(write(tmp_path / "m", {}), "missing.h"),
    )
    assert good.invoke({}).value == 1
    with pytest.raises(HandlerImportError, match="missing or not callable"):
        missing_attribute.sandboxes.warm_up()
    with pytest.raises(HandlerImportError, match="cannot import"):
        missing_module.sandboxes.warm_up()


def test_an_invocation_gets_a_lambda_context(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    write(
        tmp_path / "ctx",
        {
            "h.py": (
                "def h(event, context):\n"
                "    return {k: getattr(context, k) for k in ('function_name', 'function_version',"
                " 'invoked_function_arn', 'memory_limit_in_mb', 'aws_request_id', 'log_group_name',"
                " 'log_stream_name')} | {'left': context.get_remaining_time_in_millis()}\n"
            )
        },
    )
    (function,) = start(sandboxed, spec(tmp_path / "ctx", "h.h", timeout=3))
    result = function.invoke({})
    assert result.succeeded
    assert result.value["function_name"] == "fn-ctx"
    assert result.value["function_version"] == "$LATEST"
    assert result.value["invoked_function_arn"].endswith(":function:fn-ctx")
    assert result.value["memory_limit_in_mb"] == 128
    assert result.value["aws_request_id"] == result.request_id
    assert result.value["log_group_name"] == "/aws/lambda/fn-ctx"
    assert 2000 < result.value["left"] <= 3000
    # One log stream per execution environment, as on Lambda: the same for the
    # sandbox's next invocation.
    assert re.fullmatch(
        r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", result.value["log_stream_name"]
    )
    assert function.invoke({}).value["log_stream_name"] == result.value["log_stream_name"]


def test_a_timed_out_invocation_is_stopped_and_the_next_runs_in_a_fresh_sandbox(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    late = tmp_path / "late"
    write(
        tmp_path / "slow",
        {
            "h.py": (
                "import os, pathlib, time\n"
                "def h(e, c):\n"
                "    if e.get('sleep'):\n"
                "        time.sleep(e['sleep'])\n"
                f"        pathlib.Path({str(late)!r}).write_text('ran on')\n"
                "    return os.getpid()\n"
            )
        },
    )
    (function,) = start(sandboxed, spec(tmp_path / "slow", "h.h", timeout=0.5))
    first_pid = function.invoke({}).value
    started = time.monotonic()
    result = function.invoke({"sleep": 1})
    assert time.monotonic() - started < 0.9
    assert result.outcome == "timeout"
    assert "Task timed out after 0.50 seconds" in result.error_message()
    assert function.invoke({}).value != first_pid
    time.sleep(1)
    assert not late.exists()


def test_an_exception_is_an_error_outcome_with_its_type_and_message(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    write(tmp_path / "bad", {"h.py": "def h(e, c):\n    raise KeyError('orderId')\n"})
    (function,) = start(sandboxed, spec(tmp_path / "bad", "h.h"))
    result = function.invoke({})
    assert result.outcome == "error" and result.error_message() == "KeyError: 'orderId'"


def test_a_sandbox_that_dies_is_an_error_and_is_replaced(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    write(
        tmp_path / "dies",
        {
            "h.py": (
                "import os\ndef h(e, c):\n    if e:\n        os._exit(3)\n    return os.getpid()\n"
            )
        },
    )
    (function,) = start(sandboxed, spec(tmp_path / "dies", "h.h"))
    before = function.invoke({}).value
    result = function.invoke({"die": True})
    assert result.outcome == "error" and "exited (code 3)" in result.error_message()
    assert function.invoke({}).value not in (before, None)


def test_concurrent_invocations_run_in_separate_sandboxes_up_to_the_limit(
    tmp_path: Path, sandboxed: list[LambdaFunction], caplog: pytest.LogCaptureFixture
) -> None:
    write(
        tmp_path / "busy",
        {"h.py": "import os, time\ndef h(e, c):\n    time.sleep(0.5)\n    return os.getpid()\n"},
    )
    (function,) = start(sandboxed, spec(tmp_path / "busy", "h.h", reserved=2))

    async def burst() -> list[int]:
        results = await asyncio.gather(*(function.invoke_async({}) for _ in range(6)))
        return [r.value for r in results]

    with caplog.at_level(logging.INFO, logger="local_runtime.sandboxes"):
        pids = asyncio.run(burst())
    assert len(set(pids)) == 2  # ReservedConcurrentExecutions 2: two sandboxes, reused
    cold = [r.getMessage() for r in caplog.records if "cold start" in r.getMessage()]
    assert len(cold) == 2 and all(" ms " in line for line in cold)


SLOW_INIT = (
    "import os, time\n"
    "time.sleep(1)  # a slow init phase: every cold start takes a second\n"
    "def h(e, c):\n"
    "    time.sleep(0.2)\n"
    "    return os.getpid()\n"
)


@pytest.mark.parametrize("caller", ["event loop", "threads"])
def test_cold_starts_of_one_function_run_side_by_side_within_its_limit(
    tmp_path: Path, sandboxed: list[LambdaFunction], caller: str
) -> None:
    write(tmp_path / "slow", {"h.py": SLOW_INIT})
    (function,) = start(sandboxed, spec(tmp_path / "slow", "h.h", reserved=4))
    started = time.monotonic()
    if caller == "event loop":  # the gateways

        async def burst() -> list[Any]:
            return await asyncio.gather(*(function.invoke_async({}) for _ in range(6)))

        results = asyncio.run(burst())
    else:  # the SQS pollers and runtime.invoke
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: function.invoke({}), range(6)))
    waited = time.monotonic() - started
    assert all(r.succeeded for r in results)
    # One cold start at a time would take 4 s for the four sandboxes the limit allows;
    # side by side they are ready after about one (the slack is for a busy machine).
    assert len({r.value for r in results}) == 4
    assert function.sandboxes.cold_starts == 4
    assert waited < 3.0


def test_the_runtime_budget_bounds_how_many_cold_starts_run_at_once(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    slow = SLOW_INIT.replace("time.sleep(0.2)", "time.sleep(e['hold'])")
    write(tmp_path / "one-by-one", {"h.py": slow})
    (function,) = start(
        sandboxed,
        spec(tmp_path / "one-by-one", "h.h", reserved=3, timeout=10),
        budget=SandboxBudget(10, starting=1),
    )

    async def burst() -> list[Any]:
        return await asyncio.gather(*(function.invoke_async({"hold": 3}) for _ in range(3)))

    started = time.monotonic()
    results = asyncio.run(burst())
    waited = time.monotonic() - started
    assert all(r.succeeded for r in results) and len({r.value for r in results}) == 3
    # Three 1 s cold starts one after the other: the last invocation starts at 3 s.
    assert waited >= 5.5


def test_the_runtime_has_at_most_its_budget_of_sandboxes_and_reuses_idle_places(
    tmp_path: Path, sandboxed: list[LambdaFunction], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandboxes, "RECLAIM_IDLE_AFTER", 1.0)
    handler = (
        "import os, time\ndef h(e, c):\n    time.sleep(e.get('sleep', 0))\n    return os.getpid()\n"
    )
    a, b = start(
        sandboxed,
        spec(write(tmp_path / "a", {"h.py": handler}), "h.h"),
        spec(write(tmp_path / "b", {"h.py": handler}), "h.h"),
        budget=SandboxBudget(2, starting=2),
    )
    first_b = b.invoke({}).value
    assert a.invoke({}).succeeded  # one sandbox each: the budget is spent

    async def burst() -> list[Any]:
        return await asyncio.gather(*(a.invoke_async({"sleep": 0.4}) for _ in range(8)))

    results = asyncio.run(burst())
    assert all(r.succeeded for r in results)
    # Once B's sandbox had been idle RECLAIM_IDLE_AFTER, A got its place: B's ended.
    assert len({r.value for r in results}) == 2
    assert (len(a.sandboxes.pids), len(b.sandboxes.pids)) == (2, 0)
    deadline = time.monotonic() + 5
    while pid_alive(first_b) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(first_b)
    # B, which has none left, takes the place of one of A's at once.
    assert b.invoke({}).value not in (first_b, None)
    assert (len(a.sandboxes.pids), len(b.sandboxes.pids)) == (1, 1)


def test_a_changed_layer_file_recycles_every_function_using_the_layer(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    layer = LayerSpec("Lib", write(tmp_path / "layer2", {"python/lr_reload_lib.py": "V = 1\n"}))
    specs = []
    for name in ("r1", "r2"):
        write(
            tmp_path / name,
            {"h.py": "import lr_reload_lib\ndef h(e, c):\n    return lr_reload_lib.V\n"},
        )
        specs.append(spec(tmp_path / name, "h.h", layers=(layer,)))
    functions = start(sandboxed, *specs)
    assert [f.invoke({}).value for f in functions] == [1, 1]
    changed = layer.python_dir / "lr_reload_lib.py"
    changed.write_text("V = 22\n")
    Reloader(functions).changed({changed.resolve()})
    assert [f.invoke({}).value for f in functions] == [22, 22]


def test_a_sandbox_keeps_the_bytecode_it_compiles_in_the_runtimes_cache(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    code = write(tmp_path / "bc", {"h.py": "def h(e, c):\n    return __cached__\n"})
    cache = tmp_path / "bytecode"
    (function,) = start(sandboxed, spec(code, "h.h"), bytecode_cache=cache)
    # Whatever PYTHONDONTWRITEBYTECODE says, and with nothing written beside the source.
    source = str((code / "h.py").resolve())
    assert function.invoke({}).value == cached_bytecode(source, str(cache))
    assert Path(cached_bytecode(source, str(cache))).is_file()
    assert not (code / "__pycache__").exists()


def test_a_change_within_the_same_second_and_size_is_not_hidden_by_cached_bytecode(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    code = write(tmp_path / "same", {"h.py": "def h(e, c):\n    return 1\n"})
    cache = tmp_path / "bytecode"
    (function,) = start(sandboxed, spec(code, "h.h"), bytecode_cache=cache)
    assert function.invoke({}).value == 1
    source = code / "h.py"
    before = source.stat()
    source.write_text("def h(e, c):\n    return 2\n")
    # Bytecode is trusted by the source's mtime (whole seconds) and size: keep both.
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    Reloader([function], cache).changed({source.resolve()})
    assert function.invoke({}).value == 2


def test_a_value_lambda_could_not_serialize_is_a_marshal_error(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    write(
        tmp_path / "values",
        {
            "h.py": (
                "import decimal\n"
                "def h(e, c):\n"
                "    return {1, 2} if e.get('set') else {'price': decimal.Decimal('1.5')}\n"
            )
        },
    )
    (function,) = start(sandboxed, spec(tmp_path / "values", "h.h"))
    assert function.invoke({}).value == {"price": 1.5}  # Decimals as numbers, as on Lambda
    result = function.invoke({"set": True})
    assert result.outcome == "error"
    assert result.error_message().startswith("Runtime.MarshalError: Unable to marshal response")
    assert function.invoke({}).succeeded  # the sandbox is fine


def test_a_sandbox_killed_while_idle_fails_one_invocation_and_is_replaced(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    write(tmp_path / "idle", {"h.py": "import os\ndef h(e, c):\n    return os.getpid()\n"})
    (function,) = start(sandboxed, spec(tmp_path / "idle", "h.h"))
    pid = function.invoke({}).value
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert function.invoke({}).outcome == "error"
    assert function.invoke({}).value not in (pid, None)


RUNTIME_MAIN = """\
import os, pathlib, sys
if __name__ == "__mp_main__":  # multiprocessing re-running this file in a child
    pathlib.Path(os.environ["RERUN_MARKER"]).write_text(str(os.getpid()))
if __name__ == "__main__":
    from local_runtime.function_sandboxes import make_functions
    from local_runtime.functions import InFlight
    from local_runtime.specs import FunctionSpec

    code = pathlib.Path(sys.argv[1])
    spec = FunctionSpec("Fmain", "fn-main", "arn:aws:lambda:us-east-1:1:function:m", code, "h.h")
    functions = make_functions(
        [spec], {"Fmain": dict(os.environ)}, InFlight(),
        correlation_keys=(), websocket_endpoint=None, runtime_cap=2,
    )
    try:
        print(functions["Fmain"].invoke({}).value)
    finally:
        functions["Fmain"].sandboxes.stop(1)
"""


def test_a_sandbox_does_not_rerun_the_runtimes_main_module(tmp_path: Path) -> None:
    # `order-engine up` is a script: multiprocessing would re-run it (the whole CLI) in
    # every sandbox it starts, before the function's own code.
    main = write(tmp_path, {"runtime_main.py": RUNTIME_MAIN})
    code = write(
        tmp_path / "code",
        {
            "h.py": (
                "import sys\n"
                "def h(e, c):\n"
                "    return getattr(sys.modules['__main__'], '__file__', None)\n"
            )
        },
    )
    marker = tmp_path / "rerun"
    done = subprocess.run(
        [sys.executable, str(main / "runtime_main.py"), str(code)],
        env={**os.environ, "RERUN_MARKER": str(marker)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "None", done.stderr
    assert not marker.exists()


COUNT_BOTOCORE_FILES = """\
import boto3
from botocore import loaders

def h(e, c):
    read = []
    load_file = loaders.JSONFileLoader.load_file
    def counted(self, path):
        read.append(path)
        return load_file(self, path)
    loaders.JSONFileLoader.load_file = counted
    try:
        boto3.client("sqs", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
        boto3.client("apigatewaymanagementapi", region_name="us-east-1",
                     endpoint_url="http://127.0.0.1:9/v1")
    finally:
        loaders.JSONFileLoader.load_file = load_file
    return read
"""


def test_a_sandbox_makes_its_first_sqs_and_connections_clients_without_parsing_botocore_data(
    tmp_path: Path, sandboxed: list[LambdaFunction]
) -> None:
    write(tmp_path / "clients", {"h.py": COUNT_BOTOCORE_FILES})
    (function,) = start(sandboxed, spec(tmp_path / "clients", "h.h"))
    result = function.invoke({})
    assert result.succeeded, result.error_message()
    assert result.value == [], result.value  # the fork server parsed them once
