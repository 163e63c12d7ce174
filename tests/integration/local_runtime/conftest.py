"""The toy SAM app running on the local runtime (moto server), shared by these tests.

Tests tell their own records apart by unique markers, so they do not depend on each
other or on their order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from toy_runtime import Records, running_toy_app

from local_runtime import LocalRuntime


@pytest.fixture(scope="session")
def records_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("records") / "records.jsonl"


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory, records_file: Path) -> Iterator[LocalRuntime]:
    with running_toy_app(tmp_path_factory.mktemp("toy"), records_file) as running:
        yield running


@pytest.fixture
def records(records_file: Path) -> Records:
    return Records(records_file)


@pytest.fixture
def marker() -> str:
    return uuid.uuid4().hex
