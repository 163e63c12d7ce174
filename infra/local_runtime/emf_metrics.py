"""The CloudWatch EMF lines the functions print, kept as metrics and served as Prometheus text.

On Lambda, CloudWatch Logs turns every Embedded Metric Format line into metrics. Locally
the sandboxes hand the runtime those lines (sandbox_process.py), and `EmfMetrics` keeps
what CloudWatch would: for each metric of a line's `_aws.CloudWatchMetrics` directives,
one series per dimension set, the set's dimension values taken from the line. The rest
of the line (properties such as an id) never becomes a label: a label per id would be a
series per id, as a dimension per id would be on CloudWatch.

Served (`prometheus_text`) as the Prometheus text exposition format 0.0.4:
- a `Count` metric is a counter, `<namespace>_<metric>_total`, the sum of its values;
- a `Milliseconds` metric is a summary, `<namespace>_<metric>_milliseconds`, with the 0.5,
  0.9 and 0.99 quantiles of its last SUMMARY_WINDOW values, and its `_sum` and `_count`
  over every value;
- any other unit is a gauge, `<namespace>_<metric>`, its last value.
Dimensions are labels. A line that is not EMF is counted, never raised: a function's
output must not break the runtime.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

SUMMARY_WINDOW = 1024  # recent values per series behind the quantiles
QUANTILES = (0.5, 0.9, 0.99)
_NOT_A_NAME = re.compile(r"[^a-zA-Z0-9_]")

Labels = tuple[tuple[str, str], ...]


@dataclass
class _Summary:
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=SUMMARY_WINDOW))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.recent.append(value)
        self.total += value
        self.count += 1

    def quantile(self, q: float) -> float:
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# Every EMF line names its namespace and metrics again: their Prometheus names are
# worked out once (three regular-expression substitutions each), not per line. Bounded,
# since a function may print any names.
@functools.lru_cache(maxsize=4096)
def _name(*parts: str) -> str:
    name = "_".join(_NOT_A_NAME.sub("_", part) for part in parts if part)
    return name if not name[:1].isdigit() else f"_{name}"


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{_name(key)}="{_label_value(value)}"' for key, value in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


def _values(raw: Any) -> list[float]:
    items = raw if isinstance(raw, list) else [raw]
    return [float(item) for item in items if isinstance(item, int | float)]


class EmfMetrics:
    """Every EMF metric the functions printed since the runtime started (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}
        self._summaries: dict[str, dict[Labels, _Summary]] = {}
        self._gauges: dict[str, dict[Labels, float]] = {}
        self.rejected_lines = 0

    def add_lines(self, function: str, lines: list[str]) -> None:
        """The EMF lines one invocation of `function` printed (the sandboxes' sink)."""
        for line in lines:
            try:
                self._add(json.loads(line))
            except (ValueError, TypeError, KeyError, AttributeError):
                with self._lock:
                    self.rejected_lines += 1

    def _add(self, document: dict[str, Any]) -> None:
        directives = document["_aws"]["CloudWatchMetrics"]
        with self._lock:
            for directive in directives:
                namespace = str(directive.get("Namespace", ""))
                for dimension_set in directive.get("Dimensions") or [[]]:
                    labels: Labels = tuple(
                        sorted((str(key), str(document.get(key, ""))) for key in dimension_set)
                    )
                    for metric in directive["Metrics"]:
                        self._record(namespace, metric, labels, document)

    def _record(
        self, namespace: str, metric: dict[str, Any], labels: Labels, document: dict[str, Any]
    ) -> None:
        name, unit = str(metric["Name"]), metric.get("Unit", "None")
        values = _values(document.get(name))
        if unit == "Count":
            series = self._counters.setdefault(_name(namespace, name, "total"), {})
            series[labels] = series.get(labels, 0.0) + sum(values)
        elif unit == "Milliseconds":
            summaries = self._summaries.setdefault(_name(namespace, name, "milliseconds"), {})
            summary = summaries.setdefault(labels, _Summary())
            for value in values:
                summary.observe(value)
        elif values:
            self._gauges.setdefault(_name(namespace, name), {})[labels] = values[-1]

    def prometheus_text(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, counters in sorted(self._counters.items()):
                lines.append(f"# TYPE {name} counter")
                for labels, total in sorted(counters.items()):
                    lines.append(f"{name}{_labels(labels)} {_number(total)}")
            for name, summaries in sorted(self._summaries.items()):
                lines.append(f"# TYPE {name} summary")
                for labels, summary in sorted(summaries.items()):
                    for q in QUANTILES:
                        value = _number(summary.quantile(q))
                        quantile = f'quantile="{q}"'
                        lines.append(f"{name}{_labels(labels, quantile)} {value}")
                    lines.append(f"{name}_sum{_labels(labels)} {_number(summary.total)}")
                    lines.append(f"{name}_count{_labels(labels)} {summary.count}")
            for name, gauges in sorted(self._gauges.items()):
                lines.append(f"# TYPE {name} gauge")
                for labels, last in sorted(gauges.items()):
                    lines.append(f"{name}{_labels(labels)} {_number(last)}")
            lines.append("# TYPE local_runtime_emf_rejected_lines_total counter")
            lines.append(f"local_runtime_emf_rejected_lines_total {self.rejected_lines}")
        return "\n".join(lines) + "\n"
