"""`python -m local_runtime TEMPLATE [options]`: run a SAM template until Ctrl-C.

A thin wrapper for trying the runtime on its own; projects wrap `LocalRuntime` in their
own command (with their database, migrations... passed as env and hooks).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from local_runtime.cfn_yaml import TemplateSyntaxError
from local_runtime.function_code import HandlerImportError
from local_runtime.intrinsics import IntrinsicError
from local_runtime.options import RuntimeOptions
from local_runtime.runtime import LocalRuntime
from local_runtime.schedule_expressions import ScheduleExpressionError
from local_runtime.server_venv import ServerInstallError
from local_runtime.servers import ServerStartError
from local_runtime.sqs_backends import CHOICES, DEFAULT_BACKEND
from local_runtime.template import TemplateError

USER_ERRORS = (
    TemplateError,
    TemplateSyntaxError,
    IntrinsicError,
    HandlerImportError,
    ScheduleExpressionError,
    ServerStartError,
    ServerInstallError,
    FileNotFoundError,
)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    result = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep:
            raise SystemExit(f"{what} {value!r}: expected NAME=VALUE")
        result[name] = text
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_runtime", description=__doc__)
    parser.add_argument("template", type=Path, help="the SAM template.yaml")
    parser.add_argument(
        "--sqs", default=DEFAULT_BACKEND, help=f"{CHOICES} (default: {DEFAULT_BACKEND})"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=3000)
    parser.add_argument("--ws-port", type=int, default=3001)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--stack-name", default="local")
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override (repeatable)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment variable for every function (repeatable)",
    )
    parser.add_argument(
        "--correlation-key",
        action="append",
        default=[],
        metavar="KEY",
        help="JSON key logged as the correlation id (repeatable)",
    )
    parser.add_argument("--reload", action="store_true", help="reload code when files change")
    parser.add_argument(
        "--max-sandboxes",
        type=int,
        default=10,
        help="at most N sandbox processes per function (default 10)",
    )
    parser.add_argument(
        "--schedule-speed",
        type=float,
        default=1.0,
        help="60 makes rate(1 minute) fire every second",
    )
    parser.add_argument("--idle-timeout", type=float, default=600.0)
    parser.add_argument("--data-dir", type=Path, default=Path(".data"))
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("botocore", "urllib3", "watchfiles", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    options = RuntimeOptions(
        host=args.host,
        http_port=args.http_port,
        ws_port=args.ws_port,
        sqs=args.sqs,
        region=args.region,
        stack_name=args.stack_name,
        parameters=_pairs(args.parameter, "--parameter"),
        extra_env=_pairs(args.env, "--env"),
        correlation_keys=tuple(args.correlation_key),
        reload=args.reload,
        max_sandboxes=args.max_sandboxes,
        schedule_speed=args.schedule_speed,
        idle_timeout=args.idle_timeout,
        data_dir=args.data_dir,
        announce=False,  # logging prints the same lines here
    )
    try:
        LocalRuntime(args.template, options).run_forever()
    except USER_ERRORS as error:  # a clear sentence beats a traceback for these
        print(f"local_runtime: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
