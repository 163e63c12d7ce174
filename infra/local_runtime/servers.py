"""uvicorn servers on one asyncio event loop, in one background thread, and the Unix
sockets on which the same apps answer the runtime's own sandboxes (asgi_channel.py).

The loop only moves bytes and awaits futures; every handler runs on its own thread
(functions.py), so a slow function never blocks the sockets.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvicorn

from local_runtime.asgi import ASGIApp
from local_runtime.asgi_channel import serve_channel
from local_runtime.server_protocols import (
    MAX_MESSAGE_BYTES,
    ApiGatewayWebSocketProtocol,
    DeadlineH11Protocol,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class ServerStartError(RuntimeError):
    """A port could not be served (most often: already in use)."""


class AsgiServers:
    def __init__(self) -> None:
        self._configs: list[tuple[str, uvicorn.Config]] = []
        self._channels: list[tuple[ASGIApp, str]] = []
        self._servers: list[uvicorn.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._failed: list[str] = []

    def add(self, name: str, app: ASGIApp, host: str, port: int) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            # h11, not httptools (which uvicorn picks when it is installed): httptools
            # refuses an unknown method or a control character in a header with its
            # own plain-text 400 before the gateway sees the request, where API
            # Gateway answers 403 and the API its JSON error (tests/e2e/bad_input).
            # Both protocols add API Gateway's limits (server_protocols.py).
            http=DeadlineH11Protocol,
            ws=ApiGatewayWebSocketProtocol,
            # No X-Forwarded-For rewriting of the client's address (uvicorn's default for
            # requests from 127.0.0.1): API Gateway's sourceIp is the address the
            # request came from, whatever headers the client sends.
            proxy_headers=False,
            lifespan="off",
            log_level="warning",
            ws_max_size=MAX_MESSAGE_BYTES,
            # API Gateway WebSocket APIs accept permessage-deflate (RFC 7692) when the
            # client offers it: websockets 10.1 reverted its clients' smaller compression
            # window because of how API Gateway handled it (websockets changelog 10.1,
            # github.com/python-websockets/websockets/issues/1065). So it stays on; it
            # was 0.3 % of the runtime's GIL-holding samples at 600 orders/min.
            ws_per_message_deflate=True,
            ws_ping_interval=None,
            timeout_graceful_shutdown=2,
        )
        self._configs.append((name, config))

    def add_channel(self, app: ASGIApp, path: str) -> None:
        """Also serve `app` to sandboxes on the Unix socket at `path`."""
        self._channels.append((app, path))

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("servers are not running")
        return self._loop

    def start(self, timeout: float = 10.0) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="gateway-loop", daemon=True
        )
        self._thread.start()
        ready.wait(timeout)
        failed = self._failed or [
            name
            for (name, _), server in zip(self._configs, self._servers, strict=True)
            if not server.started
        ]
        if failed:
            self.stop()
            ports = ", ".join(
                f"{name} (port {config.port})" for name, config in self._configs if name in failed
            )
            raise ServerStartError(f"could not serve {ports}: is the port already in use?")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, ready: threading.Event) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        self._servers = [uvicorn.Server(config) for _, config in self._configs]

        async def serve(name: str, server: uvicorn.Server) -> None:
            try:
                await server.serve()
            except (SystemExit, OSError):  # uvicorn exits when it cannot bind its port
                self._failed.append(name)

        async def main() -> None:
            channels = []
            for app, path in self._channels:
                try:
                    channels.append(await serve_channel(app, path))
                except OSError as error:  # sandboxes then reach the app over HTTP
                    log.warning("no channel for sandboxes at %s: %s", path, error)
            self._tasks = [
                asyncio.create_task(serve(name, server))
                for (name, _), server in zip(self._configs, self._servers, strict=True)
            ]
            while not all(
                s.started or t.done() for s, t in zip(self._servers, self._tasks, strict=True)
            ):
                await asyncio.sleep(0.02)
            if self._failed:  # one port failed: stop the others, start() reports it
                for server in self._servers:
                    server.should_exit = True
            ready.set()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for channel in channels:
                channel.close()

        try:
            loop.run_until_complete(main())
        except Exception as error:
            log.warning("the server loop ended: %r", error)
        finally:
            ready.set()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run a coroutine on the servers' loop from another thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                for server in self._servers:
                    server.force_exit = True
                self._thread.join(2)
        if self._loop is not None and not self._loop.is_running():
            self._loop.close()
        self._thread = None
