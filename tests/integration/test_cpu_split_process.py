"""`order-engine lab cpu-split` in one process: the site hook loads the split at start-up, and
the AWS SDK's and psycopg's calls are counted in the file the process writes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from order_engine_cli.cpu_split import AWS, DATABASE, collect, read, stack_environment

SCRIPT = textwrap.dedent(
    """
    import sys
    import boto3
    from botocore.stub import Stubber
    from psycopg_pool import ConnectionPool

    sqs = boto3.client("sqs", region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(sqs) as stub:
        stub.add_response("list_queues", {"QueueUrls": []})
        sqs.list_queues()
    check = ConnectionPool.check_connection
    with ConnectionPool(sys.argv[1], min_size=1, max_size=1, check=check) as pool:
        for _ in range(3):
            with pool.connection() as conn:
                conn.execute("SELECT 1").fetchone()
    """
)


def python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """This interpreter running `code`, with `env` added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_process_started_with_the_split_counts_its_sdk_and_database_calls(
    database_url: str, tmp_path: Path
) -> None:
    out_dir = tmp_path / "split"
    done = python(SCRIPT, database_url, env=stack_environment(out_dir, os.environ))
    assert done.returncode == 0, done.stderr

    (written,) = read(out_dir).values()
    assert written["calls"][AWS] == {"ListQueues": 1}
    calls = written["calls"][DATABASE]
    assert calls["statement"] == 3  # Connection.execute's own Cursor.execute not twice
    assert calls["pool checkout (with its check)"] == 3  # its check is inside it
    assert calls["fetch"] == 3
    assert written["process_cpu_seconds"] > 0
    assert all(seconds >= 0 for seconds in written["seconds"][DATABASE].values())


def test_without_the_variable_the_site_hook_does_nothing(tmp_path: Path) -> None:
    env = stack_environment(tmp_path / "split", os.environ)
    del env["ORDER_ENGINE_CPU_SPLIT_DIR"]
    done = python(
        "import botocore.client as c; print(c.BaseClient._make_api_call.__qualname__)", env=env
    )
    assert done.stdout.strip() == "BaseClient._make_api_call", done.stderr
    assert not (tmp_path / "split").exists()


# Lists the queues `n` times through a stubbed client (no server): n ListQueues calls.
LIST_QUEUES = textwrap.dedent(
    """
    import boto3
    from botocore.stub import Stubber

    def list_queues(n):
        sqs = boto3.client("sqs", region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        with Stubber(sqs) as stub:
            for _ in range(n):
                stub.add_response("list_queues", {"QueueUrls": []})
                sqs.list_queues()
    """
)


def test_a_running_process_writes_its_totals_when_the_bench_collects_them(tmp_path: Path) -> None:
    out_dir = tmp_path / "split"
    running = subprocess.Popen(
        [sys.executable, "-c", LIST_QUEUES + "list_queues(3)\nprint(flush=True)\ninput()"],
        env={**os.environ, **stack_environment(out_dir, os.environ)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert running.stdout is not None and running.stdout.readline() == "\n"  # called
        assert collect(out_dir)[running.pid]["calls"][AWS] == {"ListQueues": 3}
    finally:
        running.communicate("\n", timeout=30)


def test_a_forked_child_counts_its_calls_in_its_own_file_and_not_the_parents(
    tmp_path: Path,
) -> None:
    out_dir = tmp_path / "split"
    parent = LIST_QUEUES + textwrap.dedent(
        """
        import os, sys

        list_queues(1)
        child = os.fork()
        if child == 0:
            list_queues(2)
            sys.exit(0)
        os.waitpid(child, 0)
        print(child)
        """
    )
    done = python(parent, env=stack_environment(out_dir, os.environ))
    assert done.returncode == 0, done.stderr
    child = int(done.stdout)

    files = read(out_dir)
    (parent_pid,) = set(files) - {child}
    assert files[parent_pid]["calls"][AWS] == {"ListQueues": 1}
    assert files[child]["calls"][AWS] == {"ListQueues": 2}  # not the parent's one again


def test_the_children_of_a_fork_server_count_their_calls_in_files_of_their_own(
    tmp_path: Path,
) -> None:
    """The runtime's sandboxes: forked from multiprocessing's fork server, which loaded
    the split at its start and makes no calls of its own, and ended by os._exit."""
    out_dir = tmp_path / "split"
    starter = textwrap.dedent(
        """
        import multiprocessing, sys

        if __name__ == "__main__":
            forkserver = multiprocessing.get_context("forkserver")
            children = [forkserver.Process(target=exec, args=(sys.argv[1], {})) for _ in range(2)]
            for child in children:
                child.start()
            for child in children:
                child.join()
            print(*(child.pid for child in children))
        """
    )
    child_code = LIST_QUEUES + "list_queues(2)"
    done = python(starter, child_code, env=stack_environment(out_dir, os.environ))
    assert done.returncode == 0, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]

    files = read(out_dir)
    for pid in pids:
        assert files[pid]["calls"][AWS] == {"ListQueues": 2}
    # The starter and the fork server made none.
    assert all(not files[pid]["calls"][AWS] for pid in set(files) - set(pids))
