"""--reload: when a file under a function's CodeUri or one of its layers changes, the
function's next invocation imports the new code (invocations already running finish
with the old code, as on a Lambda deploy)."""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Iterable
from pathlib import Path

import watchfiles

from local_runtime.function_code import FunctionCode, purge_modules_under

log = logging.getLogger(__name__)


def _is_under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class Reloader:
    def __init__(self, codes: Iterable[FunctionCode]) -> None:
        self.codes = list(codes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="reloader", daemon=True)
        folders = {c.spec.code_dir for c in self.codes}
        folders |= {layer.content_dir for c in self.codes for layer in c.spec.layers}
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
        stale: dict[str, FunctionCode] = {}
        purged_layers: set[Path] = set()
        for code in self.codes:
            if any(_is_under(p, code.spec.code_dir) for p in paths):
                stale[code.spec.logical_id] = code
            for layer in code.spec.layers:
                if any(_is_under(p, layer.content_dir) for p in paths):
                    if layer.content_dir not in purged_layers:
                        # Once per layer: the next import of any user reloads it for all.
                        purge_modules_under(layer.content_dir)
                        purged_layers.add(layer.content_dir)
                    stale[code.spec.logical_id] = code
        for code in stale.values():
            code.mark_stale()
        if stale:
            log.info("code changed; reloading %s on next call", ", ".join(sorted(stale)))
