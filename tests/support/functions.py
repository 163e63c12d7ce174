"""Importing functions/<name>.py as Lambda does: its own module, with its folder (the
CodeUri, /var/task on Lambda) on sys.path while it imports, so its sibling modules
(http_edge.py) resolve."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def load_function_module(name: str, module_name: str) -> ModuleType:
    """functions/<name>.py as a module called `module_name`."""
    path = FUNCTIONS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while it runs
    sys.path.insert(0, str(FUNCTIONS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(FUNCTIONS))
    return module
