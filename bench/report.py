"""The bench's printout: one table — our figure, the bare-Temporal baseline measured in the same
run, the ratio and the target — then the CPU profile of every process per scenario and the
notes. bench/RESULTS.md keeps the figures of full-size runs."""

from __future__ import annotations

import argparse
import os

from bench.measure import Profile, Row


def report(
    args: argparse.Namespace,
    rows: list[Row],
    profiles: list[Profile],
    notes: list[str],
    wall: float,
) -> str:
    a = args
    lines = [
        "",
        f"KWANUS bench — partners {a.partners} (parked = the fan-out's migrations), "
        f"proposals {a.proposals}, vote twins {a.votes}, read samples {a.samples}, "
        f"submissions {a.submissions}; "
        f"worker cache {a.max_cached}, fan-out batch {a.fanout_batch}; "
        f"{os.cpu_count()} cores; wall {wall:.0f} s",
        "",
    ]
    head = ("scenario", "ours", "bare Temporal (same run)", "ratio", "target", "met")
    table = [head] + [(r.scenario, r.ours, r.base, r.ratio, r.target, r.met) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for k, row in enumerate(table):
        lines.append(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if k == 0:
            lines.append("-+-".join("-" * w for w in widths))
    lines += ["", "profile (CPU seconds per process while each scenario ran):"]
    names = ("server", "worker", "api", "bare worker", "bench")
    lines.append(
        "  " + "scenario".ljust(44) + "wall".rjust(8) + "".join(n.rjust(13) for n in names)
    )
    for prof in profiles:
        lines.append(
            "  "
            + prof.scenario[:44].ljust(44)
            + f"{prof.wall:7.1f}s"
            + "".join(f"{prof.cpu[n]:12.1f}s" for n in names)
        )
        lines += [f"    {note}" for note in prof.notes]
    lines += [f"  {note}" for note in notes]
    return "\n".join(lines)
