"""--reload: when a file under a function's CodeUri or one of its layers changes, the
function's sandboxes are recycled, so its next invocation starts a sandbox that imports
the new code (invocations already running finish with the old code, as on a Lambda
deploy)."""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import watchfiles

from local_runtime.sandbox_process import cached_bytecode
from local_runtime.specs import FunctionSpec

log = logging.getLogger(__name__)


class Recyclable(Protocol):
    @property
    def spec(self) -> FunctionSpec: ...

    def recycle(self) -> None: ...


def _is_under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class Reloader:
    def __init__(self, functions: Iterable[Recyclable], bytecode_cache: Path | None = None) -> None:
        self.functions = list(functions)
        self.bytecode_cache = bytecode_cache  # the sandboxes' (use_bytecode_cache)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="reloader", daemon=True)
        folders = {f.spec.code_dir for f in self.functions}
        folders |= {layer.content_dir for f in self.functions for layer in f.spec.layers}
        self.folders = sorted(folders)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _watch(self) -> None:
        for changes in watchfiles.watch(
            *self.folders,
            stop_event=self._stop,
            debounce=300,
            step=50,
            watch_filter=watchfiles.PythonFilter(),
            raise_interrupt=False,
        ):
            self.changed({Path(path).resolve() for _, path in changes})

    def changed(self, paths: set[Path]) -> None:
        for path in paths:
            # A .pyc is trusted by mtime (whole seconds) and size: an edit within the
            # same second that keeps the size would otherwise load the old bytecode.
            if path.suffix == ".py":
                Path(importlib.util.cache_from_source(str(path))).unlink(missing_ok=True)
                if self.bytecode_cache is not None:
                    cached = cached_bytecode(str(path), str(self.bytecode_cache))
                    Path(cached).unlink(missing_ok=True)
        stale = [
            function
            for function in self.functions
            if any(
                _is_under(path, folder)
                for path in paths
                for folder in (
                    function.spec.code_dir,
                    *(layer.content_dir for layer in function.spec.layers),
                )
            )
        ]
        for function in stale:
            function.recycle()
        if stale:
            names = ", ".join(sorted(f.spec.logical_id for f in stale))
            log.info("code changed; new sandboxes for %s", names)
