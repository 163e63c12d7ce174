"""Who may see an order: API keys, the accounts they speak for, and the per-key rate limit.

A key looks like `oe_live_1a2b3c4d_<43 characters>`: a short visible prefix (how a key
is listed and revoked) and a 256-bit secret. It is shown once, when created; the
database keeps only its SHA-256, and nothing in the engine logs it.

    accounts = Accounts(store)
    issued = accounts.create_key("ci", account="acme")   # issued.key: show it once
    caller = accounts.authenticate(issued.key)            # Caller(account "acme", …)
    limiter = RateLimiter(store, per_minute=600)
    limiter.check(caller)                                 # or RateLimited(retry_after=…)
    accounts.authenticate_counted(issued.key, limiter)    # both, in one statement

Both APIs take the key as a bearer credential (`Authorization: Bearer <key>`); the
WebSocket API also as `?apiKey=`, since browsers cannot set headers on a WebSocket.
Reading it from the request is the handlers' part (functions/http_edge.py).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
import uuid
from dataclasses import dataclass, field

from order_engine.account_store import AccountStore, ApiKeyInfo, Caller, NewConnection
from order_engine.errors import NotFound, RateLimited, Unauthorized, ValidationError

__all__ = ["Accounts", "ApiKeyInfo", "Caller", "IssuedKey", "NewConnection", "RateLimiter"]

log = logging.getLogger(__name__)

KEY_PREFIX = "oe_live_"
_PREFIX_HEX_CHARS = 8
_SECRET_BYTES = 32
_KEY_SHAPE = re.compile(r"^oe_live_([0-9a-f]{8})_[A-Za-z0-9_-]{43}$")
MAX_NAME_CHARS = 100
RATE_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class IssuedKey:
    """A new key, the only time it exists in the clear; `repr` leaves it out, so a
    stray log line or traceback cannot leak it."""

    key: str = field(repr=False)
    info: ApiKeyInfo


def new_key() -> str:
    """A fresh key: `oe_live_<8 hex>_<43 url-safe characters, 256 random bits>`."""
    prefix = secrets.token_hex(_PREFIX_HEX_CHARS // 2)
    return f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"


def key_prefix(key: str) -> str | None:
    """The visible prefix of a well-formed key; None for anything else."""
    match = _KEY_SHAPE.match(key)
    return match.group(1) if match else None


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def connection_unauthorized() -> Unauthorized:
    """The refusal of a message on a connection not open under a live key."""
    return Unauthorized(
        "this connection has no valid API key: reconnect with ?apiKey=<key>",
        key_presented=False,
    )


class Accounts:
    def __init__(self, store: AccountStore) -> None:
        self._store = store

    def authenticate(self, key: str | None, *, connection: NewConnection | None = None) -> Caller:
        """The caller `key` speaks for; Unauthorized when it is missing, malformed,
        unknown or revoked (one answer for all three: nothing to probe). With
        `connection` (a WebSocket's $connect), the connection is recorded for that
        caller by the statement that checks the key, and only if it is live."""
        key_hash = _presented_hash(key)
        # A malformed key cannot match, so it costs no query.
        caller = (
            None
            if key_hash is None
            else self._store.caller_for_key(key_hash, connection=connection)
        )
        if caller is None:
            raise _not_valid()
        return caller

    def authenticate_counted(self, key: str | None, limiter: RateLimiter) -> Caller:
        """`authenticate`, with this request counted against the key's rate limit
        (`limiter`) by the statement that checks the key: Unauthorized as
        `authenticate` (a key that is not live counts nothing), then RateLimited as
        `limiter.check`. One statement where there were two."""
        if limiter.per_minute <= 0:
            return self.authenticate(key)
        key_hash = _presented_hash(key)
        found = (
            None
            if key_hash is None
            else self._store.caller_for_key_counted(key_hash, RATE_WINDOW_SECONDS)
        )
        if found is None:
            raise _not_valid()
        caller, hits, remaining = found
        limiter.enforce(hits, remaining)
        return caller

    def authenticate_connection(self, connection_id: str) -> Caller:
        """Who the WebSocket connection authenticated as in $connect, while its key lives."""
        caller = self._store.caller_for_connection(connection_id)
        if caller is None:
            raise connection_unauthorized()
        return caller

    def create_key(self, name: str, *, account: str | None = None) -> IssuedKey:
        """A new key named `name` for `account` (default: `name`), created if needed."""
        issued = self._issue(name, account or name, only_if_first=False)
        assert issued is not None
        return issued

    def create_first_key(self, name: str, *, account: str) -> IssuedKey | None:
        """A new key, but only if the database has none yet (for a first run); None
        otherwise. Safe against concurrent first runs."""
        return self._issue(name, account, only_if_first=True)

    def list_keys(self) -> list[ApiKeyInfo]:
        return self._store.list_api_keys()

    def revoke_key(self, prefix_or_key: str) -> ApiKeyInfo:
        """Revoke by prefix (or by the whole key, or `oe_live_<prefix>`, as pasted)."""
        prefix = prefix_or_key.strip().removeprefix(KEY_PREFIX).split("_", 1)[0]
        revoked = self._store.revoke_api_key(prefix)
        if revoked is None:
            raise NotFound(f"no API key has the prefix {prefix!r}", field="prefix")
        log.info("revoked API key %s (%s)", revoked.prefix, revoked.account_name)
        return revoked

    def _issue(self, name: str, account: str, *, only_if_first: bool) -> IssuedKey | None:
        _check_name(name, "name")
        _check_name(account, "account")
        # 32-bit prefixes collide now and then among many keys: draw again.
        for _ in range(5):
            key = new_key()
            prefix = key_prefix(key)
            assert prefix is not None
            info = self._store.insert_api_key(
                prefix=prefix,
                key_hash=hash_key(key),
                name=name,
                account_name=account,
                account_id=str(uuid.uuid4()),
                only_if_first=only_if_first,
            )
            if info is not None:
                log.info("created API key %s (%s) for %s", prefix, name, account)
                return IssuedKey(key=key, info=info)
            if only_if_first:  # the table was not empty, so this was no prefix collision
                return None
        raise RuntimeError("could not draw an unused key prefix")


class RateLimiter:
    """At most `per_minute` counted requests per key per minute (0: no limit).

    A fixed window counted in PostgreSQL, so every Lambda container shares it. Fixed
    windows are one upsert per request; the price is that a client may fit up to twice
    the limit into the seconds around a window boundary.
    """

    def __init__(self, store: AccountStore, *, per_minute: int) -> None:
        self._store = store
        self.per_minute = per_minute

    def check(self, caller: Caller) -> None:
        """Count this request of `caller`'s; RateLimited when it is over the limit."""
        if self.per_minute <= 0:
            return
        self.enforce(*self._store.count_request(caller.key_prefix, RATE_WINDOW_SECONDS))

    def enforce(self, hits: int, remaining: float) -> None:
        """RateLimited when a request counted as the `hits`th of its window (which ends
        in `remaining` seconds) is over the limit."""
        if hits > self.per_minute:
            raise RateLimited(
                f"rate limit of {self.per_minute} orders a minute reached for this key",
                retry_after=max(1, math.ceil(remaining)),
            )


def _presented_hash(key: str | None) -> bytes | None:
    """The hash of a presented key to look up; None for a malformed one (it cannot
    match, so it costs no query). Unauthorized when none was presented."""
    if not key:
        raise Unauthorized(
            "an API key is required: send Authorization: Bearer <key>", key_presented=False
        )
    return hash_key(key) if key_prefix(key) else None


def _not_valid() -> Unauthorized:
    return Unauthorized("the API key is not valid (unknown or revoked)", key_presented=True)


def _check_name(value: str, field_name: str) -> None:
    if not value.strip() or len(value) > MAX_NAME_CHARS or not value.isprintable():
        raise ValidationError(
            f"{field_name} must be 1 to {MAX_NAME_CHARS} printable characters", field=field_name
        )
