"""Process environment for tests that run the handlers in-process."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from order_engine.wiring import reset_engine


@contextmanager
def engine_environment(
    env: Mapping[str, str], *, also_restore: Iterable[str] = (), unset: Iterable[str] = ()
) -> Iterator[None]:
    """Set `env` for the handlers, with a fresh engine built from it, and remove the
    variables of `unset` that `env` does not give; afterwards put the variables (and
    `also_restore`, which the caller may change meanwhile) back as they were."""
    removed = [key for key in unset if key not in env]
    saved = {key: os.environ.get(key) for key in [*env, *also_restore, *removed]}
    for key in removed:
        os.environ.pop(key, None)
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
