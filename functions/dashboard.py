"""The dashboard: one HTML page at GET / that places orders and shows them move.

The page is a client of the public HTTP and WebSocket APIs only (it reads `wsUrl` from
the HTTP API's answers), so it works against AWS as it does against the local runtime.
Its HTML, CSS and JS live in functions/static/ and are put together once, at import:
one self-contained answer, no build step, nothing fetched from elsewhere at run time.
The tokens, slippage bounds and statuses come from the engine, so the page cannot
drift from what the API accepts and answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from chalice import Chalice, Response

from order_engine.order_request import (
    DEFAULT_SLIPPAGE_BPS,
    LIMIT_PRICE_DECIMALS,
    MAX_LIMIT_WAIT,
    MAX_SLIPPAGE_BPS,
    MIN_SLIPPAGE_BPS,
)
from order_engine.orders import CANCELLABLE, HAPPY_PATH, TERMINAL, Status, Step
from order_engine.tokens import TOKENS

app = Chalice(app_name="order-engine-dashboard")

STATIC = Path(__file__).resolve().parent / "static"


def _config() -> str:
    config = {
        "tokens": [
            {"symbol": t.symbol, "decimals": t.decimals, "maxAmount": format(t.max_amount, "f")}
            for t in TOKENS
        ],
        # The pipeline's statuses in order, and those that end an order.
        "happyPath": [status.value for status in HAPPY_PATH],
        "terminal": sorted(status.value for status in TERMINAL),
        # A limit order waits here between the first status and the second.
        "watching": Status.WATCHING.value,
        "limit": {
            "maxWaitMinutes": int(MAX_LIMIT_WAIT.total_seconds() // 60),
            "decimals": LIMIT_PRICE_DECIMALS,
        },
        # The statuses an order may be cancelled in (its row shows a Cancel button).
        "cancellable": sorted(status.value for status in CANCELLABLE),
        # The steps in pipeline order: the live metrics panel lists their times so.
        "steps": [step.value for step in Step],
        "slippageBps": {
            "min": MIN_SLIPPAGE_BPS,
            "max": MAX_SLIPPAGE_BPS,
            "default": DEFAULT_SLIPPAGE_BPS,
        },
    }
    # "</" would end the <script> element the JSON sits in.
    return json.dumps(config, separators=(",", ":")).replace("</", "<\\/")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _page() -> tuple[str, str]:
    """The page, and a Content-Security-Policy allowing exactly its own style and script."""
    style = (STATIC / "dashboard.css").read_text(encoding="utf-8")
    script = (STATIC / "dashboard.js").read_text(encoding="utf-8")
    html = (
        (STATIC / "dashboard.html")
        .read_text(encoding="utf-8")
        .replace("/*STYLE*/", style)
        .replace("/*CONFIG*/", _config())
        .replace("/*SCRIPT*/", script)
    )
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_sha256(script)}",
            f"style-src {_sha256(style)}",
            # The WebSocket API has a host (AWS) or a port (locally) of its own.
            "connect-src 'self' ws: wss:",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return html, policy


HTML, CONTENT_SECURITY_POLICY = _page()


@app.route("/", methods=["GET"])
def index() -> Response:
    return Response(
        body=HTML,
        status_code=200,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )
