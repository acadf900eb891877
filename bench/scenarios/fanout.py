"""Scenario 1: POST /v1/deprecations reaching every partner (a notice and a fallback each, then
each migration parked at Plan) beside bare `start_workflow` calls of a trivial workflow; the
parked scenario measures what this one leaves behind."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from bench.harness import BASE_QUEUE, BenchError, Harness
from bench.measure import Row, files_mb, fmt_ms
from kwanus import contract
from policy.vocabulary import ProcessKind
from store.tables import AuditEvent, Process

# The fan-out's starts in flight (activities/processes.py START_CONCURRENCY): the baseline's too.
FANOUT_CONCURRENCY = 32
NOTICE_ID = "bench-os-42"
PARKED = (
    f"WorkflowType='{contract.MIGRATION_WORKFLOW}' AND ExecutionStatus='Running' "
    "AND KwanusStage='Plan'"
)


@dataclass
class Fanout:
    """The Temporal server's database (MB) before and after the fan-out."""

    db_before: float
    db_after: float


def count_notices(h: Harness) -> int:
    with h.db.session() as session:
        return int(
            session.exec(
                select(func.count())
                .select_from(AuditEvent)
                .where(col(AuditEvent.event) == "notice")
                .where(col(AuditEvent.process) == ProcessKind.MIGRATION.value)
            ).one()
        )


def count_stage(h: Harness, stage: str) -> int:
    with h.db.session() as session:
        return int(
            session.exec(
                select(func.count())
                .select_from(Process)
                .where(col(Process.kind) == ProcessKind.MIGRATION.value)
                .where(col(Process.stage) == stage)
            ).one()
        )


async def run(h: Harness, *, with_baseline: bool) -> Fanout:
    n = h.args.partners
    tdb = h.procs.settings.temporal_db_file
    db_before = files_mb(tdb)
    h.log(f"fan-out: POST /v1/deprecations to {n} partners")
    marks: dict[str, float] = {}

    async def ours() -> None:
        t0 = time.monotonic()
        resp = await h.http.post(
            "/v1/deprecations",
            json={"id": NOTICE_ID, "kind": "os", "version": "4.2", "replacement": "5.0"},
            headers=h.headers["TSC"],
        )
        marks["http"] = time.monotonic() - t0
        if resp.status_code != 202:
            raise BenchError(f"deprecation: {resp.status_code} {resp.text}")
        last_log = t0
        while (done := await asyncio.to_thread(count_notices, h)) < n:
            if time.monotonic() - last_log > 15:
                h.log(f"  fan-out: {done}/{n} notices recorded")
                last_log = time.monotonic()
            if time.monotonic() - t0 > h.args.timeout:
                raise BenchError(f"fan-out: {done}/{n} notices after {h.args.timeout} s")
            await asyncio.sleep(0.5)
        marks["notices"] = time.monotonic() - t0
        while await asyncio.to_thread(count_stage, h, "Plan") < n:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        # Parked in Temporal, not only on record: each run's workflow task that starts its plan
        # window's timer has completed (it shows KwanusStage=Plan). The fan-out records the
        # notices before it starts the runs, so the rows alone would measure the batch.
        while (await h.client.count_workflows(PARKED)).count < n:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        marks["parked"] = time.monotonic() - t0

    notes: list[str] = []
    await h.profiled("fan-out (ours)", ours, notes)
    notes.append(
        f"202 in {fmt_ms(marks['http'])}; every notice + fallback on record at "
        f"{marks['notices']:.1f} s; every migration parked at Plan (its timer started) at "
        f"{marks['parked']:.1f} s"
    )
    fanned = Fanout(db_before=db_before, db_after=files_mb(tdb))
    t_ours = marks["parked"]
    await h.quiet_worker()
    if not with_baseline:
        return fanned
    h.log(f"fan-out baseline: {n} start_workflow(BenchTrivial), {FANOUT_CONCURRENCY} lanes")
    t_base = await h.profiled("fan-out (bare starts)", lambda: bare_starts(h, n))
    ours_rate, base_rate = n / t_ours, n / t_base
    mine = await history_shape(h, contract.migration_workflow_id(f"{NOTICE_ID}.fo-{n - 1:05d}"))
    theirs = await history_shape(h, f"bench-trivial-{n - 1}")
    notes.append(f"one parked migration's history: {mine}; one trivial workflow's: {theirs}")
    ratio = ours_rate / base_rate
    h.rows.append(
        Row(
            f"1. fan-out: {n} partners → notice + fallback, parked",
            f"{ours_rate:.1f}/s ({t_ours:.1f} s)",
            f"{base_rate:.1f}/s ({t_base:.1f} s)",
            f"{ratio:.2f}",
            "≥ 0.8",
            "yes" if ratio >= 0.8 else "NO",
        )
    )
    return fanned


async def history_shape(h: Harness, workflow_id: str) -> str:
    """Events, workflow tasks and activities in one run's history: the work behind it."""
    history = await h.client.get_workflow_handle(workflow_id).fetch_history()
    kinds = Counter(EventType.Name(e.event_type) for e in history.events)
    return (
        f"{len(history.events)} events, "
        f"{kinds['EVENT_TYPE_WORKFLOW_TASK_COMPLETED']} workflow tasks, "
        f"{kinds['EVENT_TYPE_ACTIVITY_TASK_SCHEDULED']} activities"
    )


async def bare_starts(h: Harness, n: int, *, parked: bool = False) -> float:
    """`n` bare starts in FANOUT_CONCURRENCY lanes; the time until every one has started and
    (trivial) completed, or (parked) been started."""
    t0 = time.monotonic()
    todo = iter(range(n))
    handles: list[WorkflowHandle[Any, Any]] = []
    prefix = "bench-parked" if parked else "bench-trivial"

    async def lane() -> None:
        for i in todo:
            handle: WorkflowHandle[Any, Any] = await h.client.start_workflow(
                "BenchParked" if parked else "BenchTrivial",
                365 if parked else i,
                id=f"{prefix}-{i}",
                task_queue=BASE_QUEUE,
            )
            handles.append(handle)

    await asyncio.gather(*(lane() for _ in range(FANOUT_CONCURRENCY)))
    if not parked:
        # Completed, counted the way ours is: a cheap count polled every 0.5 s (awaiting
        # each result would add a history long-poll per workflow to the server's work).
        query = "WorkflowType='BenchTrivial' AND ExecutionStatus='Completed'"
        while (await h.client.count_workflows(query)).count < n:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
    return time.monotonic() - t0
