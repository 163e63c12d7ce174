"""The secret part of an API key, for tests that check it is never shown or stored."""

from __future__ import annotations

from order_engine.accounts import KEY_PREFIX, key_prefix


def secret_of(key: str) -> str:
    """What follows `oe_live_<prefix>_`. Not `rsplit("_")`: the secret is url-safe
    base64 and may hold "_" itself."""
    return key.removeprefix(f"{KEY_PREFIX}{key_prefix(key)}_")
