"""Draws docs/benchmarks/latency-vs-load.png from the `order-engine bench --json` files
in this folder: end-to-end latency percentiles against the offered load, one panel per
latency profile, one line style per SQS backend (and worker processes, where set).

A development-time tool: matplotlib is not a dependency of the project.

    .venv/bin/pip install matplotlib
    .venv/bin/python docs/benchmarks/plot.py            # reads docs/benchmarks/*.json
    .venv/bin/python docs/benchmarks/plot.py docs/benchmarks/workers \
        docs/benchmarks/workers/one-process            # the worker-process runs, and
                                                       # theirs in one process: into workers/
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PERCENTILES = (("p50", "o-"), ("p90", "s--"), ("p99", "^-."))
TARGETS = {"realistic": 5.0}  # seconds: the p99 the issue asks for


def load(folders: list[Path]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Runs grouped by (profile, backend), each sorted by offered load; of several runs
    at one load, the latest. The backend is the SQS, with the stack's worker processes."""
    latest: dict[tuple[str, str, float], tuple[str, dict[str, Any]]] = {}
    for path in sorted(p for folder in folders for p in folder.glob("*.json")):
        report = json.loads(path.read_text())
        config, results = report.get("config", {}), report.get("results", {})
        rate = config.get("rate_per_minute")
        if rate is None or "latency_seconds" not in results:
            continue  # closed-loop runs have no offered load to plot against
        backend = config["sqs"]
        workers = config.get("stack_workers")  # absent: runs from before worker processes
        if workers is not None:
            backend += f", {workers} workers" if workers else ", one process"
        key = (config["profile"], backend, rate)
        run = {
            "rate": rate,
            "completed": results["throughput"]["completed_per_minute"],
            **{q: results["latency_seconds"]["end_to_end"][q] for q, _ in PERCENTILES},
        }
        finished = report.get("finished_at", "")
        if key not in latest or finished > latest[key][0]:
            latest[key] = (finished, run)
    series: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (profile, sqs, _), (_, run) in latest.items():
        series[(profile, sqs)].append(run)
    return {key: sorted(runs, key=lambda run: run["rate"]) for key, runs in series.items()}


def main(folders: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = load(folders)
    profiles = sorted({profile for profile, _ in series})
    if not profiles:
        sys.exit(f"no `order-engine bench --json` files with --rate in {folders}")
    figure, axes = plt.subplots(1, len(profiles), figsize=(6 * len(profiles), 4.5), squeeze=False)
    for axis, profile in zip(axes[0], profiles, strict=True):
        for (run_profile, sqs), runs in sorted(series.items()):
            if run_profile != profile:
                continue
            rates = [run["rate"] for run in runs]
            for percentile, style in PERCENTILES:
                values = [run[percentile] for run in runs]
                axis.plot(rates, values, style, label=f"{sqs} {percentile}")
        if profile in TARGETS:
            axis.axhline(TARGETS[profile], color="grey", linewidth=0.8)
            axis.annotate("target p99", (axis.get_xlim()[0], TARGETS[profile]), fontsize=8)
        axis.set_title(f"{profile} venue latency")
        axis.set_xlabel("offered load (orders per minute)")
        axis.set_ylabel("end-to-end latency, POST to final status (s)")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("order-engine bench on a 2-core machine (lower is better)")
    figure.tight_layout()
    out = folders[0] / "latency-vs-load.png"
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]] or [HERE])
