"""What a sandbox's botocore requests need to travel by another road than botocore's own
HTTP session (asgi_channel.py, kept_alive_http.py): handlers registered in every
botocore session, a request's body as bytes, and a response botocore can parse."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.handlers


def register_in_every_session(handlers: Iterable[tuple[str, Callable[..., Any]]]) -> None:
    """Register `handlers` ((event name, handler) pairs) in every botocore session of
    this process: those made from now on (every session registers BUILTIN_HANDLERS when
    it is made, what moto does to reach sessions it never sees), and boto3's default
    session, which the fork server's preload made before (botocore_warmup)."""
    handlers = list(handlers)
    botocore.handlers.BUILTIN_HANDLERS.extend(handlers)
    if boto3.DEFAULT_SESSION is not None:
        for name, handler in handlers:
            boto3.DEFAULT_SESSION._session.register(name, handler)


class ClientReadTimeouts:
    """The read timeout of the client whose request this thread is sending. botocore
    hands a `before-send` handler the request without its client's config, so a
    `request-created` handler (`note`) keeps it for the thread until the send."""

    def __init__(self) -> None:
        self._local = threading.local()

    def note(self, **event: Any) -> None:
        config = (getattr(event.get("request"), "context", None) or {}).get("client_config")
        self._local.timeout = getattr(config, "read_timeout", None)

    def current(self) -> float | None:
        return getattr(self._local, "timeout", None)


def origin_and_target(url: str) -> tuple[str, str]:
    """A request URL's origin (scheme://host:port), which says where it goes, and its
    target (path and query), which the server reads."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"{parts.scheme}://{parts.netloc}", target


def body_bytes(body: Any) -> bytes:
    """A prepared request's body (bytes, text, a file or None) as bytes."""
    if body is None:
        return b""
    if hasattr(body, "read"):
        body = body.read()
    return body.encode() if isinstance(body, str) else bytes(body)


def header_text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


class RawBody:
    """What botocore reads an AWSResponse's body from (`raw.stream()`)."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def stream(self, **_: Any) -> Any:
        yield self._payload
