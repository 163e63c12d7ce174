"""`order-engine lab cpu-split` in one process: the site hook loads the split at start-up, and
the AWS SDK's and psycopg's calls are counted in the file the process writes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from order_engine_cli.cpu_split import AWS, DATABASE, read, stack_environment

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
