"""The local development key: made by the first `order-engine up` on a database without
keys, saved to .data/dev-api-key (git-ignored), and used by `demo`, `bench` and the
banner.

The database keeps only the key's hash, so the file is the one place the key lives;
later runs read it back and check that it still opens this database. It holds one key
per database `up` has made one for (the embedded one, and any DATABASE_URL), one a
line, the one that opens the database `up` ran on last first: that is the one `demo`
and `bench` read. A run on another database adds its key and never drops the others'.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts
from order_engine.database import Database
from order_engine.errors import Unauthorized
from order_engine_cli.project import DATA_DIR

DEV_ACCOUNT = "local-dev"
DEV_KEY_FILE = DATA_DIR / "dev-api-key"


@dataclass(frozen=True)
class DevKey:
    key: str = field(repr=False)
    path: Path
    created: bool  # made by this run (else: read back from `path`)


# Revoked keys and forgotten databases would otherwise pile up in the file forever.
MAX_SAVED_KEYS = 8


def read_saved_key(path: Path = DEV_KEY_FILE) -> str | None:
    """The key for the database `up` ran on last, if any."""
    saved = read_saved_keys(path)
    return saved[0] if saved else None


def read_saved_keys(path: Path = DEV_KEY_FILE) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").split()  # a key holds no whitespace
    except FileNotFoundError:
        return []


def ensure_dev_key(database_url: str, path: Path = DEV_KEY_FILE) -> DevKey | None:
    """The development key for this database: the saved one if it still opens it, a new
    one if the database has no keys at all, else None (the database has keys of its
    own, and none of them is saved here: `order-engine keys create` makes one)."""
    saved = read_saved_keys(path)
    with Database(database_url, max_size=1) as database:
        accounts = Accounts(AccountStore(database))
        for key in saved:
            try:
                accounts.authenticate(key)
            except Unauthorized:
                continue  # saved for another database, or revoked
            if key != saved[0]:
                _save(path, [key, *saved])
            return DevKey(key, path, created=False)
        issued = accounts.create_first_key(DEV_ACCOUNT, account=DEV_ACCOUNT)
    if issued is None:
        return None
    _save(path, [issued.key, *saved])
    return DevKey(issued.key, path, created=True)


def _save(path: Path, keys: list[str]) -> None:
    """Write the keys, first one first, readable by their owner only (each opens every
    order of local-dev in its database)."""
    unique = list(dict.fromkeys(keys))[:MAX_SAVED_KEYS]
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write("".join(key + "\n" for key in unique))
    path.chmod(0o600)  # O_CREAT's mode does not apply to a file that already existed
