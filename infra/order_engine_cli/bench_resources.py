"""CPU seconds and peak memory of a process tree, and how busy the machine was.

Read from Linux's /proc rather than with psutil, so the CLI needs no extra dependency;
elsewhere the figures are simply absent. A sampler thread walks the tree every half
second: it remembers each process's last CPU time (a child that exits before the end
still counts up to its last sample) and the largest total resident memory it saw.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROC = Path("/proc")
# What a word of a command line says the process is. `up` forks its functions'
# sandboxes (and the fork server itself) from multiprocessing's fork server, whose
# command line they keep; `bench-sqs` spawns its replaying processes.
KNOWN_PROCESSES = (
    ("localstack", "localstack"),
    ("ministack", "ministack"),
    ("moto", "moto"),
    ("postgres", "postgres"),
    ("multiprocessing.forkserver", "sandboxes"),
    ("multiprocessing.spawn", "workers"),
)
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def available() -> bool:
    return (PROC / "self" / "stat").exists()


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def children_of(root: int) -> list[int]:
    """`root` and every live descendant."""
    parents: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process (not of its reaped children)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # Fields 14 and 15 of stat(5) (utime, stime); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def label(pid: int, root: int) -> str:
    """A short name for a process of the tree: the root, or what its command runs."""
    if pid == root:
        return "root"
    try:
        argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [part.decode(errors="replace") for part in argv if part]
    for word in words:
        for known, name in KNOWN_PROCESSES:
            if known in word:
                return name
    return Path(words[0]).name if words else "?"


def rss_bytes(pid: int) -> int:
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already part of user time
    return (total - idle) / _TICKS, total / _TICKS


@dataclass
class TreeSampler:
    """Samples the trees rooted at `roots` (name -> pid) until stopped."""

    roots: dict[str, int]
    interval: float = 0.5
    _cpu: dict[str, dict[int, float]] = field(default_factory=dict)
    _start_cpu: dict[str, dict[int, float]] = field(default_factory=dict)
    _peak_rss: dict[str, int] = field(default_factory=dict)
    _processes: dict[str, int] = field(default_factory=dict)
    _labels: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _machine_start: tuple[float, float] = (0.0, 0.0)
    _machine_end: tuple[float, float] = (0.0, 0.0)
    _started: float = 0.0
    _stopped: float = 0.0

    def start(self) -> None:
        self._started = time.time()
        self._machine_start = machine_cpu()
        self._sample(first=True)
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Stop sampling; the figures of each tree, and of the machine, since start()."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self._stopped = time.time()
        self._machine_end = machine_cpu()
        busy = self._machine_end[0] - self._machine_start[0]
        total = self._machine_end[1] - self._machine_start[1]
        figures: dict[str, Any] = {}
        for name in self.roots:
            by_label: dict[str, float] = {}
            for pid, cpu in self._cpu[name].items():
                spent = cpu - self._start_cpu[name].get(pid, 0.0)
                by_label[self._labels[pid]] = by_label.get(self._labels[pid], 0.0) + spent
            figures[name] = {
                "cpu_seconds": round(sum(by_label.values()), 2),
                # Which process of the tree spent it: "root" is the tree's first process.
                "cpu_seconds_by_process": {k: round(v, 2) for k, v in sorted(by_label.items())},
                "peak_rss_mb": round(self._peak_rss[name] / 2**20, 1),
                "processes_seen": self._processes[name],
            }
        figures["machine"] = {
            "cpus": os.cpu_count(),
            "busy_fraction": round(busy / total, 3) if total > 0 else None,
            "wall_seconds": round(self._stopped - self._started, 1),
        }
        return figures

    def labels(self) -> dict[int, str]:
        """Every process seen so far, by pid: its short name (see `label`)."""
        return dict(self._labels)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self, first: bool = False) -> None:
        for name, root in self.roots.items():
            cpus = self._cpu.setdefault(name, {})
            rss = 0
            for pid in children_of(root):
                cpu = cpu_seconds(pid)
                if cpu is None:
                    continue
                if first:
                    # Only what the run itself costs: start-up counts for nothing.
                    self._start_cpu.setdefault(name, {})[pid] = cpu
                cpus[pid] = cpu
                if pid not in self._labels:
                    self._labels[pid] = label(pid, root)
                rss += rss_bytes(pid)
            self._start_cpu.setdefault(name, {})
            self._peak_rss[name] = max(self._peak_rss.get(name, 0), rss)
            self._processes[name] = len(cpus)


def postmaster_pid(pgdata: Path) -> int | None:
    """The embedded PostgreSQL's server process, from its postmaster.pid."""
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
