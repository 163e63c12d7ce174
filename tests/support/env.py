"""Process environment for tests that run the handlers in-process."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from order_engine.wiring import reset_engine


@contextmanager
def engine_environment(
    env: Mapping[str, str], *, also_restore: Iterable[str] = ()
) -> Iterator[None]:
    """Set `env` for the handlers, with a fresh engine built from it; afterwards put the
    variables (and `also_restore`, which the caller may change meanwhile) back as they were."""
    saved = {key: os.environ.get(key) for key in [*env, *also_restore]}
    os.environ.update(env)
    reset_engine()
    try:
        yield
    finally:
        reset_engine()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
