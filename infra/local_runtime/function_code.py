"""Loading a function's handler inside its sandbox, as Lambda's Python runtime does.

The sandbox is the function's own process, so its code needs no isolation from other
functions' code: the CodeUri goes first on `sys.path` (as /var/task does on Lambda) and
each layer's python/ folder after it (as /opt/python), and both stay there, so imports
a handler makes while it runs resolve as they would on Lambda.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from local_runtime.specs import FunctionSpec


class HandlerImportError(RuntimeError):
    """The Handler of a function cannot be imported or is not callable."""


def split_handler(handler: str) -> tuple[str, str]:
    """'pkg/module.attr' or 'module.attr' -> ('pkg.module', 'attr'), as Lambda reads it."""
    module, dot, attribute = handler.rpartition(".")
    if not dot or not module or not attribute:
        raise HandlerImportError(f"Handler {handler!r} is not of the form module.attribute")
    return module.replace("/", "."), attribute


def put_code_on_path(spec: FunctionSpec) -> None:
    """CodeUri first, then the layers in the template's order."""
    folders = [str(spec.code_dir)] + [
        str(layer.python_dir) for layer in spec.layers if layer.python_dir.is_dir()
    ]
    for index, folder in enumerate(folders):
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(index, folder)


def load_handler(spec: FunctionSpec) -> Callable[..., Any]:
    """Import the function's handler; HandlerImportError names what went wrong."""
    module_name, attribute = split_handler(spec.handler)
    put_code_on_path(spec)
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise HandlerImportError(
            f"{spec.logical_id}: cannot import {module_name!r} from {spec.code_dir}: "
            f"{type(error).__name__}: {error}"
        ) from error
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise HandlerImportError(
            f"{spec.logical_id}: {module_name}.{attribute} is missing or not callable"
        )
    return handler
