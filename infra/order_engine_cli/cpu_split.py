"""Where a stack's Python CPU goes: AWS SDK calls, database driver calls, the rest.

`order-engine lab cpu-split` runs the stack it starts with this module loaded into
each of its Python processes (through `cpu_split_site/sitecustomize.py` on the stack's
PYTHONPATH; the stack's own code is not touched). Every call into botocore's
`_make_api_call` (and into local_runtime/sqs_poll_client.py, which makes the runtime's
pollers' SQS calls without botocore: counted with the AWS SDK's) and into psycopg
(statements, fetches, commits, the pool's checkout with its check) is timed in thread
CPU time (`time.thread_time`), so waiting for the network or for the GIL counts for
nothing. Each process writes its totals to `<dir>/<pid>.json` when the bench asks
(`collect`: it touches `<dir>/request`, which every process looks at twice a second) and
as it ends; the bench collects them when the load starts and when it ends and reports
the difference, per kind of process. Writing on request, not on a clock: a write costs
0.4-0.6 ms of CPU here (the file's open, write and rename), and twice a second in each of
25 sandboxes that was 2.4 ms per order at 600 orders a minute, in the figures it reports.

A process forked from one that is split accounts for itself: the runtime's sandboxes are
forked from multiprocessing's fork server, which loaded this module at its start. A fork
keeps the wrapped functions but neither the writer thread nor a right to the parent's
totals, so the child starts from zero (as its own CPU time does), with a writer of its
own, to its own `<pid>.json`. Multiprocessing's children end with `os._exit`, which runs
no `atexit`, after multiprocessing's own exit finalizers: the child's last write is one
of those. Only a process killed outright (a sandbox that timed out) loses what it did
since the last request.

Why it exists: sampling profilers (py-spy) only see the thread holding the GIL and
lose the samples of threads that have ended, and the stack starts a thread per
invocation. Counting at the library boundary is exact, and it answers the question
the benchmark needs answered: how much of the CPU is the AWS calls and database round
trips the design makes, and how much is the project's own code around them.

Costs about 2 µs per wrapped call (a hundred or so per order), counted in the rest,
and the CPU of each process's writer thread (its looks at the request and its writes),
counted apart (`split_writer_ms_per_order`).
"""

from __future__ import annotations

import atexit
import json
import multiprocessing.util
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ENV_VAR = "ORDER_ENGINE_CPU_SPLIT_DIR"
SITE_DIR = Path(__file__).with_name("cpu_split_site")
REQUEST = "request"  # the file `collect` touches to have every process write its totals
LOOK_INTERVAL = 0.5  # seconds between two looks at it

AWS = "aws_sdk"
DATABASE = "database_driver"


class _Accounts:
    """Thread CPU seconds and call counts by (kind, name), for this process."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Nothing counted yet. Also what a forked child starts from: its CPU time starts
        at zero, the parent's calls are the parent's, and the lock may have been held by
        the parent's writer thread at the fork (it would stay locked in the child)."""
        self._local = threading.local()
        self._lock = threading.Lock()
        self.seconds: dict[str, dict[str, float]] = {AWS: {}, DATABASE: {}}
        self.calls: dict[str, dict[str, int]] = {AWS: {}, DATABASE: {}}
        self.writer_seconds = 0.0  # the CPU of the thread that writes these totals

    def wrap(self, owner: type, attribute: str, kind: str, name: Callable[..., str]) -> None:
        original = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            # Only the outermost library call counts: Connection.execute runs
            # Cursor.execute, the pool's checkout runs a statement as its check.
            if getattr(self._local, "inside", False):
                return original(*args, **kwargs)
            self._local.inside = True
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                self._local.inside = False
                key = name(args)
                with self._lock:
                    self.seconds[kind][key] = self.seconds[kind].get(key, 0.0) + spent
                    self.calls[kind][key] = self.calls[kind].get(key, 0) + 1

        timed.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(owner, attribute, timed)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "pid": os.getpid(),
                "process_cpu_seconds": time.process_time(),
                "writer_seconds": self.writer_seconds,
                "seconds": {kind: dict(v) for kind, v in self.seconds.items()},
                "calls": {kind: dict(v) for kind, v in self.calls.items()},
            }


def install(out_dir: Path) -> None:
    """Time the AWS SDK's and the database driver's calls in this process from now on."""
    # Imported here, not at the top: the bench itself imports this module and needs
    # neither library wrapped. Both are in every stack process (the project's venv).
    import botocore.client
    import psycopg
    import psycopg_pool

    from local_runtime.sqs_poll_client import SqsPollClient

    accounts = _Accounts()
    # BaseClient._make_api_call(self, operation_name, api_params)
    accounts.wrap(botocore.client.BaseClient, "_make_api_call", AWS, lambda args: args[1])
    # SqsPollClient._call(self, operation_name, parameters): the same calls, without botocore.
    accounts.wrap(SqsPollClient, "_call", AWS, lambda args: args[1])
    for owner, attribute, label in (
        (psycopg.Cursor, "execute", "statement"),
        (psycopg.Cursor, "executemany", "statement"),
        (psycopg.Connection, "execute", "statement"),
        (psycopg.Cursor, "fetchone", "fetch"),
        (psycopg.Cursor, "fetchall", "fetch"),
        (psycopg.Cursor, "fetchmany", "fetch"),
        (psycopg.Transaction, "__enter__", "transaction begin/end"),
        (psycopg.Transaction, "__exit__", "transaction begin/end"),
        # The pool's connection() block commits as it ends; in autocommit that sends
        # nothing, but it is the driver's CPU all the same.
        (psycopg.Connection, "commit", "connection commit/rollback"),
        (psycopg.Connection, "rollback", "connection commit/rollback"),
        (psycopg_pool.ConnectionPool, "getconn", "pool checkout (with its check)"),
        (psycopg_pool.ConnectionPool, "putconn", "pool return"),
    ):
        accounts.wrap(owner, attribute, DATABASE, lambda _args, label=label: label)
    out_dir.mkdir(parents=True, exist_ok=True)
    request = out_dir / REQUEST

    def dump() -> None:
        # The pid of the moment, not of install(): a forked child writes its own file.
        path = out_dir / f"{os.getpid()}.json"
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(accounts.snapshot()))
        os.replace(scratch, path)

    def dump_when_asked() -> None:
        answered = None  # the request last answered (its modification time)
        while True:
            time.sleep(LOOK_INTERVAL)
            try:
                asked = request.stat().st_mtime_ns
                if asked != answered:
                    answered = asked
                    # This thread does nothing else: its CPU is the split's own.
                    accounts.writer_seconds = time.thread_time()
                    dump()
            except FileNotFoundError:
                if not out_dir.is_dir():
                    return  # the bench has finished with the stack
            except OSError:
                return

    def last_dump() -> None:
        if out_dir.is_dir():
            dump()

    def start_writer() -> None:
        threading.Thread(target=dump_when_asked, name="cpu-split", daemon=True).start()

    def in_forked_child() -> None:
        accounts.reset()
        start_writer()

    def in_multiprocessing_child(_accounts: _Accounts) -> None:
        # Run by multiprocessing in each child it starts (after it has cleared the
        # parent's finalizers), so that the child's end, by os._exit, writes its totals.
        multiprocessing.util.Finalize(None, last_dump, exitpriority=0)

    dump()
    start_writer()
    atexit.register(last_dump)  # inherited by a forked child, where it writes the child's
    os.register_at_fork(after_in_child=in_forked_child)
    multiprocessing.util.register_after_fork(accounts, in_multiprocessing_child)


def install_from_env() -> None:
    if out_dir := os.environ.get(ENV_VAR):
        install(Path(out_dir))


def stack_environment(out_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """What to add to a stack's environment so that its Python processes are split."""
    path = [str(SITE_DIR), *filter(None, [environ.get("PYTHONPATH")])]
    return {ENV_VAR: str(out_dir), "PYTHONPATH": os.pathsep.join(path)}


def collect(out_dir: Path) -> dict[int, dict[str, Any]]:
    """Every process's totals as of now (by pid): asks them to write, and reads once each
    live one has looked (a process that has ended wrote its last totals as it ended)."""
    (out_dir / REQUEST).write_text(str(time.time_ns()))
    time.sleep(2 * LOOK_INTERVAL)
    return read(out_dir)


def read(out_dir: Path) -> dict[int, dict[str, Any]]:
    """Every process's latest totals, by pid."""
    # Each file is replaced whole (os.replace), so a read never sees half of one.
    return {int(path.stem): json.loads(path.read_text()) for path in out_dir.glob("*.json")}


def difference(
    before: Mapping[int, dict[str, Any]],
    after: Mapping[int, dict[str, Any]],
    labels: Mapping[int, str],
    per: int,
) -> dict[str, Any]:
    """What each kind of process spent between two reads, in ms per `per` (orders):
    its CPU in all, in the AWS SDK and database driver by call, in the split's own writer
    thread, and the rest."""
    kinds: dict[str, dict[str, Any]] = {}
    for pid, end in after.items():
        start = before.get(pid, {"process_cpu_seconds": 0.0, "seconds": {}, "calls": {}})
        kind = kinds.setdefault(
            labels.get(pid, "?"),
            {"processes": 0, "cpu": 0.0, "writer": 0.0, AWS: {}, DATABASE: {}},
        )
        kind["processes"] += 1
        kind["cpu"] += end["process_cpu_seconds"] - start["process_cpu_seconds"]
        kind["writer"] += end.get("writer_seconds", 0.0) - start.get("writer_seconds", 0.0)
        for library in (AWS, DATABASE):
            for call, seconds in end["seconds"].get(library, {}).items():
                calls = end["calls"][library][call] - start["calls"].get(library, {}).get(call, 0)
                seconds -= start["seconds"].get(library, {}).get(call, 0.0)
                if calls:
                    entry = kind[library].setdefault(call, [0.0, 0])
                    entry[0] += seconds
                    entry[1] += calls
    scale = 1000 / max(1, per)
    report: dict[str, Any] = {}
    for label, kind in sorted(kinds.items()):
        libraries = {}
        for library in (AWS, DATABASE):
            libraries[library] = {
                "ms_per_order": round(sum(s for s, _ in kind[library].values()) * scale, 2),
                "by_call": {
                    call: {
                        "ms_per_order": round(seconds * scale, 2),
                        "calls_per_order": round(calls / max(1, per), 2),
                        "ms_per_call": round(1000 * seconds / calls, 3),
                    }
                    for call, (seconds, calls) in sorted(
                        kind[library].items(), key=lambda item: -item[1][0]
                    )
                },
            }
        total, writer = kind["cpu"] * scale, kind["writer"] * scale
        report[label] = {
            "processes": kind["processes"],
            "cpu_ms_per_order": round(total, 2),
            **libraries,
            "split_writer_ms_per_order": round(writer, 2),
            "rest_ms_per_order": round(
                total - writer - sum(v["ms_per_order"] for v in libraries.values()), 2
            ),
        }
    return report
