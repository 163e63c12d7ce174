"""Functions share one interpreter but not their modules; the invocation contract."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from local_runtime.chalice_support import prepare_handler
from local_runtime.function_code import FunctionCode, HandlerImportError, split_handler
from local_runtime.functions import InFlight, LambdaFunction, correlation_ids
from local_runtime.reloader import Reloader
from local_runtime.specs import FunctionSpec, LayerSpec


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def spec(
    code_dir: Path, handler: str, *, timeout: float = 3, layers: tuple[LayerSpec, ...] = ()
) -> FunctionSpec:
    return FunctionSpec(
        logical_id=f"F{code_dir.name}",
        function_name=f"fn-{code_dir.name}",
        arn=f"arn:aws:lambda:us-east-1:1:function:fn-{code_dir.name}",
        code_dir=code_dir,
        handler=handler,
        timeout=timeout,
        layers=layers,
    )


def test_two_functions_with_same_module_names_do_not_collide(tmp_path: Path) -> None:
    for name in ("one", "two"):
        write(
            tmp_path / name,
            {
                "app.py": "from helpers import who\ndef handler(e, c):\n    return who()\n",
                "helpers.py": f"def who():\n    return {name!r}\n",
            },
        )
    one = FunctionCode(spec(tmp_path / "one", "app.handler")).handler()
    two = FunctionCode(spec(tmp_path / "two", "app.handler")).handler()
    assert (one(None, None), two(None, None)) == ("one", "two")
    # Their modules do not linger where other code (or the next function) would find them.
    assert "helpers" not in sys.modules and "app" not in sys.modules


def test_a_module_the_host_already_imported_is_put_back(tmp_path: Path) -> None:
    write(
        tmp_path / "f",
        {
            "json_tools.py": "X = 'function'\n",
            "main.py": "import json_tools\ndef h(e, c):\n    return json_tools.X\n",
        },
    )
    host_module = type(sys)("json_tools")
    sys.modules["json_tools"] = host_module
    try:
        handler = FunctionCode(spec(tmp_path / "f", "main.h")).handler()
        assert handler(None, None) == "function"
        assert sys.modules["json_tools"] is host_module
    finally:
        del sys.modules["json_tools"]


def test_layers_are_on_the_path_and_shared(tmp_path: Path) -> None:
    layer = LayerSpec("Lib", write(tmp_path / "layer", {"python/sharedlib_xyz.py": "N = []\n"}))
    for name in ("a", "b"):
        write(
            tmp_path / name,
            {"h.py": "import sharedlib_xyz\ndef h(e, c):\n    return sharedlib_xyz\n"},
        )
    a = FunctionCode(spec(tmp_path / "a", "h.h", layers=(layer,))).handler()
    b = FunctionCode(spec(tmp_path / "b", "h.h", layers=(layer,))).handler()
    assert a(None, None) is b(None, None)


def test_handlers_in_subfolders_and_bad_handlers(tmp_path: Path) -> None:
    assert split_handler("pkg/module.attr") == ("pkg.module", "attr")
    write(tmp_path / "f", {"pkg/__init__.py": "", "pkg/mod.py": "def h(e, c):\n    return 1\n"})
    assert FunctionCode(spec(tmp_path / "f", "pkg/mod.h")).handler()(None, None) == 1
    with pytest.raises(HandlerImportError, match="missing or not callable"):
        FunctionCode(spec(tmp_path / "f", "pkg/mod.nope")).handler()
    with pytest.raises(HandlerImportError, match="cannot import"):
        FunctionCode(spec(tmp_path / "f", "missing.h")).handler()


def test_an_invocation_gets_a_lambda_context(tmp_path: Path) -> None:
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
    function_spec = spec(tmp_path / "ctx", "h.h", timeout=3)
    function = LambdaFunction(function_spec, FunctionCode(function_spec), InFlight())
    result = function.invoke({})
    assert result.succeeded
    assert result.value["function_name"] == "fn-ctx"
    assert result.value["function_version"] == "$LATEST"
    assert result.value["invoked_function_arn"].endswith(":function:fn-ctx")
    assert result.value["memory_limit_in_mb"] == 128
    assert result.value["aws_request_id"] == result.request_id
    assert result.value["log_group_name"] == "/aws/lambda/fn-ctx"
    assert 2000 < result.value["left"] <= 3000


def test_an_invocation_past_its_timeout_is_reported_as_timed_out(tmp_path: Path) -> None:
    write(tmp_path / "slow", {"h.py": "import time\ndef h(e, c):\n    time.sleep(1)\n"})
    function_spec = spec(tmp_path / "slow", "h.h", timeout=0.2)
    in_flight = InFlight()
    function = LambdaFunction(function_spec, FunctionCode(function_spec), in_flight)
    started = time.monotonic()
    result = function.invoke({})
    assert time.monotonic() - started < 0.9
    assert result.outcome == "timeout"
    assert "Task timed out after 0.20 seconds" in result.error_message()
    assert in_flight.wait_idle(2)  # the thread still ends; shutdown can wait for it


def test_an_exception_is_an_error_outcome_with_its_message(tmp_path: Path) -> None:
    write(tmp_path / "bad", {"h.py": "def h(e, c):\n    raise KeyError('orderId')\n"})
    function_spec = spec(tmp_path / "bad", "h.h")
    result = LambdaFunction(function_spec, FunctionCode(function_spec), InFlight()).invoke({})
    assert result.outcome == "error" and "KeyError" in result.error_message()


def test_correlation_ids_come_from_configured_keys_in_bodies() -> None:
    event = {
        "Records": [
            {"body": '{"orderId": "o-1"}'},
            {"body": '{"data": {"orderId": "o-2"}}'},
            {"body": "not json"},
        ]
    }
    assert correlation_ids(event, ["orderId"]) == ["o-1", "o-2"]
    assert correlation_ids({"body": '{"orderId": "o-3"}'}, ["orderId"]) == ["o-3"]
    assert correlation_ids({"pathParameters": {"orderId": "o-4"}}, ["orderId"]) == ["o-4"]
    assert correlation_ids({"body": '{"orderId": "o-3"}'}, []) == []
    deep = "[" * 5000 + "]" * 5000  # too deep for json.loads: no id, and no RecursionError
    assert correlation_ids({"body": deep, "pathParameters": {"orderId": "o-5"}}, ["orderId"]) == [
        "o-5"
    ]


def test_a_chalice_app_invoked_on_many_threads_sees_each_threads_own_request(
    tmp_path: Path,
) -> None:
    write(
        tmp_path / "chalice_app",
        {
            "app.py": (
                "import time\n"
                "from chalice import Chalice\n"
                "app = Chalice(app_name='concurrent')\n"
                "@app.route('/items/{n}')\n"
                "def item(n):\n"
                "    time.sleep(0.05)  # another request arrives meanwhile\n"
                "    return {'n': n, 'seen': app.current_request.uri_params['n'],\n"
                "            'request_id': app.lambda_context.aws_request_id}\n"
            )
        },
    )
    function_spec = spec(tmp_path / "chalice_app", "app.app")
    code = FunctionCode(function_spec, on_load=lambda h: prepare_handler(h, None))
    function = LambdaFunction(function_spec, code, InFlight())

    def event(n: int) -> dict[str, object]:
        return {
            "requestContext": {"httpMethod": "GET", "resourcePath": "/items/{n}"},
            "headers": {},
            "multiValueQueryStringParameters": None,
            "pathParameters": {"n": str(n)},
            "stageVariables": None,
            "body": None,
        }

    submitted = [function.submit(event(n)) for n in range(8)]
    for n, (context, future) in enumerate(submitted):
        body = json.loads(future.result(5).value["body"])
        assert body == {"n": str(n), "seen": str(n), "request_id": context.aws_request_id}


def test_a_changed_layer_file_reloads_every_function_using_the_layer(tmp_path: Path) -> None:
    layer = LayerSpec("Lib", write(tmp_path / "layer2", {"python/lr_reload_lib.py": "V = 1\n"}))
    codes = []
    for name in ("r1", "r2"):
        write(
            tmp_path / name,
            {"h.py": "import lr_reload_lib\ndef h(e, c):\n    return lr_reload_lib.V\n"},
        )
        codes.append(FunctionCode(spec(tmp_path / name, "h.h", layers=(layer,))))
    assert [code.handler()(None, None) for code in codes] == [1, 1]
    changed = layer.python_dir / "lr_reload_lib.py"
    changed.write_text("V = 22\n")
    Reloader(codes).changed({changed.resolve()})
    assert [code.handler()(None, None) for code in codes] == [22, 22]
    assert [code.generation for code in codes] == [2, 2]
