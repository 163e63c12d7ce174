"""The local runtime's metrics endpoint over a real socket, while template.yaml runs: the
EMF lines the engine prints in its sandboxes, as Prometheus text at METRICS_PATH."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import pytest

from local_runtime.http_gateway import METRICS_PATH
from local_runtime.runtime import LocalRuntime
from order_engine_cli.client import OrderClient
from tests.support.stack import HAPPY, follow_posted_order

SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(\{.*\})? (\S+)$")


def scrape(runtime: LocalRuntime) -> tuple[str, str, dict[str, float]]:
    with urllib.request.urlopen(runtime.http_url + METRICS_PATH, timeout=10) as response:  # noqa: S310
        text = response.read().decode()
        content_type = response.headers["Content-Type"]
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, f"not a Prometheus sample line: {line!r}"
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return content_type, text, samples


def confirmed_total(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("OrderEngine_OrdersConfirmed_total"))


def scrape_until(runtime: LocalRuntime, done: float, timeout: float = 10) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        _, _, samples = scrape(runtime)
        if confirmed_total(samples) >= done or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def test_an_order_shows_in_the_metrics_as_counters_and_step_quantiles(
    runtime: LocalRuntime, client: OrderClient
) -> None:
    _, _, before = scrape(runtime)
    _, events = follow_posted_order(client)
    assert [e["status"] for e in events] == HAPPY
    samples = scrape_until(runtime, confirmed_total(before) + 1)

    # At least this order: the stack is the worker's, and orders an earlier test left in
    # flight (limit orders waiting for their price, a burst) may confirm meanwhile.
    assert confirmed_total(samples) >= confirmed_total(before) + 1
    placed = [k for k in samples if k.startswith("OrderEngine_OrdersPlaced_total{")]
    assert placed and all('service="' in k for k in placed)
    for step in ("route", "build", "submit", "confirm"):
        count = [
            v
            for k, v in samples.items()
            if k.startswith("OrderEngine_StepDuration_milliseconds_count{")
            and f'step="{step}"' in k
        ]
        assert count and sum(count) >= 1, step
        p99 = [
            k
            for k in samples
            if k.startswith("OrderEngine_StepDuration_milliseconds{")
            and f'step="{step}"' in k
            and 'quantile="0.99"' in k
        ]
        assert p99, step
    assert any(k.startswith("OrderEngine_VenueChosen_total{") and "venue=" in k for k in samples)


def test_the_order_id_is_never_a_label_and_the_answer_is_prometheus_text(
    runtime: LocalRuntime, client: OrderClient
) -> None:
    order_id, _ = follow_posted_order(client)
    content_type, text, _ = scrape(runtime)
    assert content_type.startswith("text/plain; version=0.0.4")
    assert order_id not in text and "order_id" not in text
    assert "# TYPE OrderEngine_StepDuration_milliseconds summary" in text


def test_only_get_is_answered_at_the_metrics_path(runtime: LocalRuntime) -> None:
    url = runtime.http_url + METRICS_PATH
    request = urllib.request.Request(url, data=b"x", method="POST")  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert refused.value.code == 405
    assert refused.value.headers["Allow"] == "GET, HEAD"
