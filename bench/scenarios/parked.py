"""Scenario 4: the fan-out's migrations parked on their timers beside as many bare parked
workflows — worker RSS and server database growth — then both workers restarted: ready without
replaying parked histories, and the first step on a parked migration replays only its own."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from bench.harness import BenchError, Harness
from bench.measure import Row, cpu_s, files_mb, fmt_ms, rss_mb
from bench.scenarios.fanout import NOTICE_ID, Fanout, bare_starts
from store import gauges
from store.tables import utcnow
from testdata.factories import MIGRATION_PLAN


async def run(h: Harness, fanned: Fanout) -> None:
    n = h.args.partners
    p = h.procs
    assert p.worker is not None
    tdb = p.settings.temporal_db_file
    await h.quiet(p.worker.pid)
    rss_ours = rss_mb(p.worker.pid)
    db_ours = fanned.db_after - fanned.db_before
    app_db = files_mb(Path(p.settings.database_url.removeprefix("sqlite:///")))
    h.log(f"parked: {n} bare BenchParked workflows for the baseline")
    before = files_mb(tdb)
    t_park = await h.profiled("parked (bare starts)", lambda: bare_starts(h, n, parked=True))
    await h.quiet(h.base_proc.pid)
    rss_base = rss_mb(h.base_proc.pid)
    db_base = files_mb(tdb) - before
    h.rows.append(
        Row(
            f"4. worker RSS, {n} parked (cache {h.args.max_cached})",
            f"{rss_ours:.0f} MB",
            f"{rss_base:.0f} MB",
            f"{rss_ours / rss_base:.2f}x",
            "≤ 300 MB",
            "yes" if rss_ours <= 300 else "NO",
        )
    )
    h.rows.append(
        Row(
            f"4. server DB growth, {n} parked",
            f"{db_ours:.0f} MB ({db_ours * 1e3 / n:.1f} KB each)",
            f"{db_base:.0f} MB ({db_base * 1e3 / n:.1f} KB each)",
            f"{db_ours / db_base:.1f}x" if db_base > 0 else "—",
            "—",
            "",
        )
    )
    h.notes.append(
        f"app database (SQLite, WAL) after the fan-out: {app_db:.0f} MB; "
        f"bare parked starts took {t_park:.1f} s"
    )
    h.notes.append(_scrape_cost(h, n))
    # Restart both workers: ready = polling again; no parked history is replayed up front.
    old = p.terminate_worker()
    if await p.exited(old, 60) is None:
        raise BenchError("the worker did not stop within 60 s")
    p.forget(old)
    t0 = time.monotonic()
    await h.start_worker()
    ready_ours = time.monotonic() - t0
    cpu_after = cpu_s(p.worker.pid if p.worker else None)
    await asyncio.sleep(3.0)
    assert p.worker is not None
    idle_cpu = cpu_s(p.worker.pid) - cpu_after
    rss_restart = rss_mb(p.worker.pid)

    # One parked migration asked to move on: only its own history is replayed.
    async def timed_plan(partner: str) -> float:
        t0 = time.perf_counter()
        resp = await h.http.post(
            f"/v1/migrations/{NOTICE_ID}.{partner}/plan",
            json=MIGRATION_PLAN,
            headers=h.headers[partner],
        )
        if resp.status_code != 200:
            raise BenchError(f"plan after restart: {resp.status_code} {resp.text}")
        return time.perf_counter() - t0

    first_step = await timed_plan("fo-00000")
    second_step = await timed_plan("fo-00001")
    h.base_proc.terminate()
    h.base_proc.wait(timeout=60)
    p.forget(h.base_proc)
    t0 = time.monotonic()
    await h.start_baseline_worker()
    ready_base = time.monotonic() - t0
    h.rows.append(
        Row(
            f"4. restarted worker ready, {n} parked",
            f"{ready_ours:.1f} s",
            f"{ready_base:.1f} s",
            f"{ready_ours / ready_base:.2f}x",
            "no up-front replay",
            "yes" if idle_cpu < 0.5 else "NO",
        )
    )
    h.rows.append(
        Row(
            "4. first step on a parked migration after restart",
            fmt_ms(first_step),
            "—",
            "—",
            "—",
            "",
        )
    )
    h.notes.append(
        f"restarted worker: {idle_cpu:.2f} CPU-s in its first 3 s polling (no replay of "
        f"parked histories), RSS {rss_restart:.0f} MB; first plan on a parked migration "
        f"{fmt_ms(first_step)} (replays that one history), the next {fmt_ms(second_step)}"
    )


def _scrape_cost(h: Harness, n: int) -> str:
    """What one scrape of the business gauges costs the store with `n` migrations parked: the
    API's own read (`store.gauges`), timed here against the same database."""
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        with h.db.session() as session:
            read = gauges.read(session, utcnow())
        times.append(time.perf_counter() - t0)
    open_ = sum(read.open_processes.values())
    return (
        f"business gauges read ({open_} open processes, {n} parked): median "
        f"{statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms over 20 reads"
    )
