"""Scenario: the lifecycle with metrics and tracing on, beside the same run with them off
(issue 23). After a warm-up round (not counted), rounds off, on, on, off (the order cancels a
drift), each on a freshly started worker and API; on: both Prometheus endpoints served and
scraped every second (Prometheus itself scrapes every 15 s by default), and every span
exported with OTLP to a collector in this process."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

from bench.expansion import api_lifecycle
from bench.harness import OBSERVED_ROUNDS, Harness
from bench.measure import Row
from bench.stack import free_port
from testdata.otlp import Collector, collecting

SCRAPE_EVERY = 1.0
ON = "metrics + tracing on"
OFF = "metrics + tracing off"


async def _restart(h: Harness, *, on: bool, collector: Collector) -> list[str]:
    """The worker and the API again, observed or not; the metrics URLs they serve."""
    procs = h.procs
    proc = procs.terminate_worker()
    if await procs.exited(proc, 60) is None:
        proc.kill()
    procs.forget(proc)
    procs.stop_api()
    procs.stack.env["KWANUS_OTLP_ENDPOINT"] = collector.endpoint if on else ""
    procs.metrics_ports = {"worker": free_port(), "api": free_port()} if on else {}
    await h.start_worker()
    await procs.start_api()
    return [f"http://127.0.0.1:{port}/metrics" for port in procs.metrics_ports.values()]


async def _scrape(urls: list[str], counts: dict[str, int]) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            for url in urls:
                resp = await http.get(url)
                counts["scrapes"] += resp.status_code == 200
                counts["bytes"] += len(resp.content)
            await asyncio.sleep(SCRAPE_EVERY)


async def run(h: Harness) -> None:
    n = h.args.proposals
    a = h.args
    first = a.proposals + a.votes + a.inbox + a.submissions  # partners no other scenario uses
    rounds = (None, False, True, True, False)  # None: the warm-up
    assert len(rounds) == OBSERVED_ROUNDS
    h.log(f"observed: {n} lifecycles a round, a warm-up then off, on, on, off")
    seconds = {True: 0.0, False: 0.0}
    cpu = {True: {"worker": 0.0, "api": 0.0}, False: {"worker": 0.0, "api": 0.0}}
    counts = {"scrapes": 0, "bytes": 0}
    with collecting() as collector:
        for k, observed in enumerate(rounds):
            on = bool(observed)
            urls = await _restart(h, on=on, collector=collector)
            await h.quiet_worker()
            scraper = asyncio.create_task(_scrape(urls, counts)) if on else None
            off = first + k * n

            async def lifecycles(off: int = off, k: int = k) -> None:
                await asyncio.gather(
                    *(api_lifecycle(h, off + i, f"api-observed-{k}-{i}") for i in range(n))
                )

            name = "warm-up" if observed is None else f"{ON if on else OFF}, round {k}"
            t0 = time.monotonic()
            await h.profiled(f"lifecycle ({name})", lifecycles)
            if observed is not None:
                seconds[on] += time.monotonic() - t0
                for process in cpu[on]:
                    cpu[on][process] += h.profiles[-1].cpu[process]
            if scraper is not None:
                scraper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scraper
            await h.quiet_worker()
        await _restart(h, on=False, collector=collector)  # as the other scenarios expect it
        spans = len(collector.received())
    done = n * rounds.count(True)
    ratio = seconds[False] / seconds[True]
    h.rows.append(
        Row(
            f"2b. lifecycle, {ON} vs off: {done} expansions a side",
            f"{done / seconds[True]:.2f}/s ({seconds[True]:.1f} s)",
            f"{done / seconds[False]:.2f}/s ({seconds[False]:.1f} s, off)",
            f"{ratio:.2f}",
            "≥ 0.9",
            "yes" if ratio >= 0.9 else "NO",
        )
    )
    h.notes.append(
        f"observed: {spans} spans received over OTLP, {counts['scrapes']} scrapes "
        f"({counts['bytes'] / max(counts['scrapes'], 1) / 1024:.0f} KiB each) while on; CPU "
        + ", ".join(f"{p} {cpu[True][p]:.1f} s on vs {cpu[False][p]:.1f} s off" for p in cpu[True])
    )
