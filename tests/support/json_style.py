"""The public JSON style: every object key camelCase. `snake_case_keys` finds the keys
that break it, with where they are, so a failing test names them."""

from __future__ import annotations

from typing import Any


def snake_case_keys(value: Any, where: str = "$") -> list[str]:
    """Paths ("$.route.quotes[0].error_code") of every key holding an underscore."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}"
            if "_" in str(key):
                found.append(path)
            found += snake_case_keys(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += snake_case_keys(item, f"{where}[{index}]")
    return found
