"""The one place the runtime knows about Chalice, for two things Lambda never needs.

1. Thread safety. On Lambda a container handles one request at a time, so Chalice keeps
   the request being handled on the app object (`app.current_request`,
   `app.lambda_context`). Here several invocations of one function run at once on
   threads, so each thread must see its own: the app's class is swapped for a subclass
   whose two attributes are thread-local (what `chalice local` does with LocalChalice).
2. The WebSocket API client. Chalice's WebsocketAPI builds its @connections endpoint
   from the event's apiId as `https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`
   and passes it to boto3 as an explicit endpoint_url, which no environment variable
   can override. While `_endpoint` is still unset (Chalice only sets it once), the
   runtime points it at the local @connections API.

Handler objects that are not Chalice's are left untouched.
"""

from __future__ import annotations

import threading
from typing import Any

try:
    from chalice import Chalice as _Chalice

    CHALICE_APP: type | None = _Chalice
except ImportError:  # the runtime also runs templates without any Chalice function
    CHALICE_APP = None

_PER_THREAD = threading.local()


class _PerThreadRequestState:
    @property
    def current_request(self) -> Any:
        return getattr(_PER_THREAD, "current_request", None)

    @current_request.setter
    def current_request(self, value: Any) -> None:
        _PER_THREAD.current_request = value

    @property
    def lambda_context(self) -> Any:
        return getattr(_PER_THREAD, "lambda_context", None)

    @lambda_context.setter
    def lambda_context(self, value: Any) -> None:
        _PER_THREAD.lambda_context = value


def make_thread_safe(handler: Any) -> None:
    """Give a Chalice app per-thread current_request/lambda_context (no-op otherwise)."""
    if CHALICE_APP is None or not isinstance(handler, CHALICE_APP):
        return
    if isinstance(handler, _PerThreadRequestState):
        return
    cls = type(handler)
    handler.__class__ = type(f"PerThread{cls.__name__}", (_PerThreadRequestState, cls), {})


def point_websocket_api_at(handler: Any, endpoint: str | None) -> None:
    websocket_api: Any = getattr(handler, "websocket_api", None)
    if endpoint and getattr(websocket_api, "_endpoint", "unset") is None:
        websocket_api._endpoint = endpoint


def prepare_handler(handler: Any, websocket_endpoint: str | None) -> None:
    """Everything the runtime adjusts on a freshly imported handler object."""
    make_thread_safe(handler)
    point_websocket_api_at(handler, websocket_endpoint)
