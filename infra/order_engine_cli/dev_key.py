"""The local development key: made by the first `order-engine up` on a database without
keys, saved to .data/dev-api-key (git-ignored), and used by `demo` and the banner.

The database keeps only the key's hash, so the file is the one place the key lives;
later runs read it back and check that it still opens this database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from order_engine.account_store import AccountStore
from order_engine.accounts import Accounts
from order_engine.errors import Unauthorized
from order_engine_cli.project import DATA_DIR

DEV_ACCOUNT = "local-dev"
DEV_KEY_FILE = DATA_DIR / "dev-api-key"


@dataclass(frozen=True)
class DevKey:
    key: str = field(repr=False)
    path: Path
    created: bool  # made by this run (else: read back from `path`)


def read_saved_key(path: Path = DEV_KEY_FILE) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def ensure_dev_key(database_url: str, path: Path = DEV_KEY_FILE) -> DevKey | None:
    """The development key for this database: the saved one if it still opens it, a new
    one if the database has no keys at all, else None (the database has keys of its
    own, and none of them is saved here: `order-engine keys create` makes one)."""
    with AccountStore(database_url, max_size=1) as store:
        accounts = Accounts(store)
        saved = read_saved_key(path)
        if saved is not None:
            try:
                accounts.authenticate(saved)
                return DevKey(saved, path, created=False)
            except Unauthorized:
                pass  # saved for another database, or revoked
        issued = accounts.create_first_key(DEV_ACCOUNT, account=DEV_ACCOUNT)
    if issued is None:
        return None
    _save(path, issued.key)
    return DevKey(issued.key, path, created=True)


def _save(path: Path, key: str) -> None:
    """Write the key readable by its owner only (it opens every order of local-dev)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(key + "\n")
    path.chmod(0o600)  # O_CREAT's mode does not apply to a file that already existed
