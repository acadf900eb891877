"""What the bench reads off a run: percentiles, a process's memory and CPU from /proc, the size
of a SQLite database, and the rows and profiles the report prints."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a live process (and its waited-for children)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / ticks


def files_mb(*paths: Path) -> float:
    total = 0
    for base in paths:
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(base) + suffix)
            if p.exists():
                total += p.stat().st_size
    return total / 1e6


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


@dataclass
class Row:
    """One line of the table: our figure beside the bare-Temporal baseline and the target."""

    scenario: str
    ours: str
    base: str
    ratio: str
    target: str
    met: str


@dataclass
class Profile:
    """CPU seconds each process spent while one scenario (or one side of it) ran."""

    scenario: str
    wall: float
    cpu: dict[str, float]
    notes: list[str] = field(default_factory=list)
