"""EMF lines to Prometheus text: Count as counters, Milliseconds as summaries, other
units as gauges; dimensions as labels and nothing else."""

from __future__ import annotations

import json
from typing import Any

from local_runtime.emf_metrics import EmfMetrics


def emf(name: str, unit: str, value: Any, dimensions: list[str], **fields: Any) -> str:
    directive = {
        "Namespace": "Shop",
        "Dimensions": [dimensions],
        "Metrics": [{"Name": name, "Unit": unit}],
    }
    return json.dumps(
        {"_aws": {"Timestamp": 0, "CloudWatchMetrics": [directive]}, name: value, **fields}
    )


def test_counts_add_up_per_dimension_set_and_properties_are_never_labels() -> None:
    metrics = EmfMetrics()
    metrics.add_lines("F", [emf("Sold", "Count", 1, ["reason"], reason="ok", cart_id="c-1")])
    metrics.add_lines("F", [emf("Sold", "Count", 2, ["reason"], reason="ok", cart_id="c-2")])
    metrics.add_lines("F", [emf("Sold", "Count", 1, ["reason"], reason='a "b"\\c', cart_id="c-3")])
    text = metrics.prometheus_text()
    assert "# TYPE Shop_Sold_total counter" in text
    assert 'Shop_Sold_total{reason="ok"} 3\n' in text
    assert 'Shop_Sold_total{reason="a \\"b\\"\\\\c"} 1\n' in text
    assert "cart_id" not in text and "c-1" not in text


def test_milliseconds_give_quantiles_sum_and_count() -> None:
    metrics = EmfMetrics()
    lines = [emf("Took", "Milliseconds", v, ["step"], step="pack") for v in range(1, 101)]
    metrics.add_lines("F", lines)
    metrics.add_lines("F", [emf("Took", "Milliseconds", [5, 7], ["step"], step="ship")])
    text = metrics.prometheus_text()
    assert "# TYPE Shop_Took_milliseconds summary" in text
    assert 'Shop_Took_milliseconds{step="pack",quantile="0.5"} 51\n' in text
    assert 'Shop_Took_milliseconds{step="pack",quantile="0.99"} 100\n' in text
    assert 'Shop_Took_milliseconds_sum{step="pack"} 5050\n' in text
    assert 'Shop_Took_milliseconds_count{step="ship"} 2\n' in text


def test_other_units_are_gauges_and_bad_lines_are_counted_not_raised() -> None:
    metrics = EmfMetrics()
    metrics.add_lines("F", [emf("Slip", "None", 4.5, []), '{"_aws": 1}', "{not json"])
    text = metrics.prometheus_text()
    assert "Shop_Slip 4.5\n" in text
    assert "local_runtime_emf_rejected_lines_total 2\n" in text
