"""Loading a function's code in-process, isolated from every other function's code.

On Lambda each function has its own interpreter, so two functions may both ship an
`app.py`. Here they share one interpreter, so each function's modules are imported in
a private window: the names its CodeUri defines are stashed out of `sys.modules`, the
CodeUri goes first on `sys.path` (as /var/task does on Lambda), the handler module is
imported, and then the function's own modules are taken out of `sys.modules` again
(they live on through the handler's references) and the stashed ones put back.

Layers are different: their python/ folders stay on `sys.path` and their modules are
shared by every function that uses them (one copy per process, as a layer is one copy
per Lambda sandbox). Imports executed later, inside a handler call, resolve against the
shared `sys.modules`/`sys.path`, which does not contain CodeUri: import at module level.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from local_runtime.specs import FunctionSpec, LayerSpec

log = logging.getLogger(__name__)

# Imports mutate process-wide state (sys.path, sys.modules): one at a time.
IMPORT_LOCK = threading.RLock()


class HandlerImportError(RuntimeError):
    """The Handler of a function cannot be imported or is not callable."""


def module_names_in(folder: Path) -> set[str]:
    """Top-level module names a folder defines (its .py files and package folders)."""
    names = set()
    for entry in folder.iterdir():
        if entry.is_file() and entry.suffix == ".py":
            names.add(entry.stem)
        elif entry.is_dir() and entry.name.isidentifier():
            names.add(entry.name)
    # Never stash the standard library: a folder called `logging` must not unload it.
    return names - set(sys.stdlib_module_names)


def _owned_by(name: str, top_level: set[str]) -> bool:
    return name.split(".", 1)[0] in top_level


def _pop_modules(top_level: set[str]) -> dict[str, ModuleType]:
    popped = {}
    for name in [n for n in sys.modules if _owned_by(n, top_level)]:
        popped[name] = sys.modules.pop(name)
    return popped


def add_layers_to_path(layers: Iterable[LayerSpec]) -> None:
    """Put each layer's python/ folder on sys.path once (after anything already there)."""
    for layer in layers:
        folder = str(layer.python_dir)
        if layer.python_dir.is_dir() and folder not in sys.path:
            sys.path.append(folder)


def purge_modules_under(folder: Path) -> int:
    """Forget every module loaded from `folder`, so the next import reads the files again."""
    prefix = str(folder.resolve())
    with IMPORT_LOCK:
        stale = [
            name
            for name, module in sys.modules.items()
            if (getattr(module, "__file__", None) or "").startswith(prefix)
        ]
        for name in stale:
            del sys.modules[name]
    return len(stale)


def split_handler(handler: str) -> tuple[str, str]:
    """'pkg/module.attr' or 'module.attr' -> ('pkg.module', 'attr'), as Lambda reads it."""
    module, dot, attribute = handler.rpartition(".")
    if not dot or not module or not attribute:
        raise HandlerImportError(f"Handler {handler!r} is not of the form module.attribute")
    return module.replace("/", "."), attribute


class FunctionCode:
    """A function's handler, imported on first use and again after `mark_stale()`."""

    def __init__(self, spec: FunctionSpec, on_load: Callable[[Any], None] | None = None) -> None:
        self.spec = spec
        self._on_load = on_load
        self._handler: Callable[..., Any] | None = None
        self._lock = threading.Lock()
        self.generation = 0  # how many times the code was (re)loaded

    def mark_stale(self) -> None:
        with self._lock:
            self._handler = None

    def handler(self) -> Callable[..., Any]:
        with self._lock:
            if self._handler is None:
                self._handler = self._load()
                self.generation += 1
            return self._handler

    def _load(self) -> Callable[..., Any]:
        module_name, attribute = split_handler(self.spec.handler)
        code_dir = self.spec.code_dir
        with IMPORT_LOCK:
            add_layers_to_path(self.spec.layers)
            own_names = module_names_in(code_dir)
            stashed = _pop_modules(own_names)
            sys.path.insert(0, str(code_dir))
            try:
                importlib.invalidate_caches()
                module = importlib.import_module(module_name)
                handler = getattr(module, attribute, None)
            except Exception as error:
                raise HandlerImportError(
                    f"{self.spec.logical_id}: cannot import {module_name!r} from {code_dir}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            finally:
                sys.path.remove(str(code_dir))
                _pop_modules(own_names)
                sys.modules.update(stashed)
        if not callable(handler):
            raise HandlerImportError(
                f"{self.spec.logical_id}: {module_name}.{attribute} is missing or not callable"
            )
        if self._on_load is not None:
            self._on_load(handler)
        log.debug("loaded %s from %s", self.spec.handler, code_dir)
        return handler
