"""Scenario 2: N expansions driven submission → release over HTTP, then the same Temporal calls
straight from a bare client; throughput side by side."""

from __future__ import annotations

import asyncio
import time

from bench.expansion import api_lifecycle, bare_lifecycle
from bench.harness import Harness
from bench.measure import Row


async def run(h: Harness) -> None:
    n = h.args.proposals
    h.log(f"lifecycle: {n} expansions over HTTP, then {n} straight to Temporal")

    async def ours() -> None:
        await asyncio.gather(*(api_lifecycle(h, i) for i in range(n)))

    async def bare() -> None:
        await asyncio.gather(*(bare_lifecycle(h, i) for i in range(n)))

    t0 = time.monotonic()
    await h.profiled("lifecycle (ours, HTTP)", ours)
    t_ours = time.monotonic() - t0
    await h.quiet_worker()
    t0 = time.monotonic()
    await h.profiled("lifecycle (bare client)", bare)
    t_base = time.monotonic() - t0
    ratio = t_base / t_ours
    h.rows.append(
        Row(
            f"2. lifecycle: {n} expansions submission → release",
            f"{n / t_ours:.2f}/s ({t_ours:.1f} s)",
            f"{n / t_base:.2f}/s ({t_base:.1f} s)",
            f"{ratio:.2f}",
            "≥ 0.8",
            "yes" if ratio >= 0.8 else "NO",
        )
    )
    await h.quiet_worker()
