"""PostgreSQL for a laptop: the server named by DATABASE_URL, or an embedded one.

The embedded server is pgserver's (PostgreSQL binaries shipped in a wheel). Its data
lives in a folder of the project, so orders survive a restart; several processes may
share it, and the last one out stops it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Database:
    url: str
    embedded: bool
    _server: Any = None

    def describe(self) -> str:
        if self.embedded:
            return f"embedded PostgreSQL (data in {self._server.pgdata})"
        return f"PostgreSQL at {_redact(self.url)}"

    def stop(self) -> None:
        """Stop the embedded server if this process started it (no-op otherwise)."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def open_database(data_dir: Path, url: str | None = None) -> Database:
    """The database at `url` (default: $DATABASE_URL), else an embedded one in `data_dir`."""
    url = url or os.environ.get("DATABASE_URL")
    if url:
        return Database(url=url, embedded=False)
    import pgserver  # imported here: only laptops without DATABASE_URL need it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    log.info("embedded PostgreSQL running in %s", data_dir)
    return Database(url=server.get_uri(), embedded=True, _server=server)


def _redact(url: str) -> str:
    """The URL without its password, for logs and banners."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in credentials else url
