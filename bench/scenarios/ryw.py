"""Scenario 6, issue 19 (read-your-writes; its rows are numbered 19): what a client sees right
after its own write.

- **Submission latency**: `POST /v1/expansions` until its 202, beside a bare `start_workflow` of
  `BenchSteps` (bench/baseline.py).
- **Submission → first step accepted**: from sending the POST until TSC's review of the new
  expansion is accepted (2xx). A review sent before the workflow has opened its reviews is
  refused (409), so the client sends it again after RETRY_PAUSE, counting each retry. Beside it:
  bare `start_workflow` then `execute_update` of a step the workflow accepts at once — the same
  two calls the client makes — and, in a note, one `execute_update_with_start_workflow`.
- **Step then read**: each body's review POSTed, then `GET /v1/expansions/{id}` until the body
  shows the review, counting the reads that did not show it yet (stale); beside a bare
  `execute_update` then `query("status")`, counted the same way.

One submission at a time, ours then the bare twins, alternated, so each side sees the same load.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy

from bench.expansion import PROPOSAL
from bench.harness import BASE_QUEUE, BenchError, Harness
from bench.measure import Row, fmt_ms, pct
from policy.vocabulary import Body
from testdata.factories import review

RETRY_PAUSE = 0.02  # a step refused as not yet awaited, or a stale read, is sent again after this
PATIENCE = 120.0  # how long one step may keep being refused, or one read stay stale


class Tally:
    """One side's figures."""

    def __init__(self) -> None:
        self.submit: list[float] = []  # send → the submission's answer
        self.first: list[float] = []  # send → the first step accepted
        self.opened: list[float] = []  # the submission's answer → the first step accepted
        self.retries: list[int] = []  # refusals of the first step, per submission
        self.refusals: Counter[int] = Counter()  # by HTTP status (ours)
        self.read: list[float] = []  # a step sent → a read that shows it
        self.stale = 0  # reads that did not show the step yet


async def ours(h: Harness, i: int, eid: str, t: Tally) -> None:
    pid = f"api-{i:04d}"
    t0 = time.perf_counter()
    resp = await h.http.post("/v1/expansions", json={**PROPOSAL, "id": eid}, headers=h.headers[pid])
    answered = time.perf_counter()
    t.submit.append(answered - t0)
    if resp.status_code != 202:
        raise BenchError(f"submit {eid}: {resp.status_code} {resp.text}")
    retries = 0
    for body in Body:
        give_up = time.monotonic() + PATIENCE
        while True:
            sent = time.perf_counter()
            resp = await h.http.post(
                f"/v1/expansions/{eid}/reviews", json=review(body), headers=h.headers[body.value]
            )
            if 200 <= resp.status_code < 300:
                break
            # 409: the reviews are not open yet. 404: neither the store nor a describe knows
            # the run yet. Either way the client sends the review again.
            if resp.status_code not in (404, 409) or time.monotonic() > give_up:
                raise BenchError(f"{eid} review by {body}: {resp.status_code} {resp.text}")
            if body is not Body.TSC:
                raise BenchError(f"{eid} review by {body} refused once reviews were open")
            retries += 1
            t.refusals[resp.status_code] += 1
            await asyncio.sleep(RETRY_PAUSE)
        if body is Body.TSC:
            accepted = time.perf_counter()
            t.first.append(accepted - t0)
            t.opened.append(accepted - answered)
            t.retries.append(retries)
        give_up = time.monotonic() + PATIENCE
        while True:
            resp = await h.http.get(f"/v1/expansions/{eid}", headers=h.headers[pid])
            if resp.status_code == 200 and body.value in resp.json()["reviews"]:
                t.read.append(time.perf_counter() - sent)
                break
            if resp.status_code not in (200, 404) or time.monotonic() > give_up:
                raise BenchError(f"GET {eid} after {body}: {resp.status_code} {resp.text}")
            t.stale += 1
            await asyncio.sleep(RETRY_PAUSE)


async def bare(h: Harness, wid: str, t: Tally) -> None:
    t0 = time.perf_counter()
    handle = await h.client.start_workflow("BenchSteps", id=wid, task_queue=BASE_QUEUE)
    answered = time.perf_counter()
    t.submit.append(answered - t0)
    retries = 0
    for body in Body:
        give_up = time.monotonic() + PATIENCE
        while True:
            sent = time.perf_counter()
            try:
                await handle.execute_update("step", body.value, result_type=list[str])
                break
            except WorkflowUpdateFailedError:
                if time.monotonic() > give_up:
                    raise
            retries += 1
            await asyncio.sleep(RETRY_PAUSE)
        if body is Body.TSC:
            accepted = time.perf_counter()
            t.first.append(accepted - t0)
            t.opened.append(accepted - answered)
            t.retries.append(retries)
        give_up = time.monotonic() + PATIENCE
        while True:
            steps = await handle.query("status", result_type=list[str])
            if body.value in steps:
                t.read.append(time.perf_counter() - sent)
                break
            if time.monotonic() > give_up:
                raise BenchError(f"{wid}: {body} not read back within {PATIENCE:.0f} s")
            t.stale += 1
            await asyncio.sleep(RETRY_PAUSE)


async def bare_with_start(h: Harness, wid: str, took: list[float]) -> None:
    t0 = time.perf_counter()
    await h.client.execute_update_with_start_workflow(
        "step",
        Body.TSC.value,
        start_workflow_operation=WithStartWorkflowOperation(
            "BenchSteps",
            id=wid,
            task_queue=BASE_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        ),
        result_type=list[str],
    )
    took.append(time.perf_counter() - t0)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


async def run(h: Harness) -> None:
    n = h.args.submissions
    off = h.args.proposals + h.args.votes + h.args.inbox
    h.log(f"ryw: {n} submissions each side, one at a time, alternated")
    await h.quiet_worker()
    o, b = Tally(), Tally()
    with_start: list[float] = []
    stamp = time.strftime("%H%M%S")
    bare_ids: list[str] = []

    async def alternated() -> None:
        for i in range(n):
            await ours(h, off + i, f"ryw-{i}", o)
            wid = f"bench-ryw-{stamp}-{i}"
            await bare(h, wid, b)
            bare_ids.append(wid)
            wid = f"bench-ryw-uws-{stamp}-{i}"
            await bare_with_start(h, wid, with_start)
            bare_ids.append(wid)

    notes: list[str] = []
    await h.profiled("ryw (alternated)", alternated, notes)
    # The bare runs end (not measured); our expansions stay open, awaiting their votes.
    await asyncio.gather(*(h.client.get_workflow_handle(w).signal("close") for w in bare_ids))

    retried = sum(1 for r in o.retries if r)
    mean = sum(o.retries) / n
    by_status = ", ".join(f"{c} of status {s}" for s, c in sorted(o.refusals.items())) or "none"
    notes += [
        f"first review: {sum(o.retries)} refusals over {n} submissions ({by_status}); "
        f"{retried} of {n} submissions needed a retry, at most {max(o.retries)} "
        f"(retry after {RETRY_PAUSE * 1000:.0f} ms); bare: {sum(b.retries)} refusals",
        f"the 202 → the first review accepted: p50 {fmt_ms(pct(o.opened, 50))}, "
        f"p99 {fmt_ms(pct(o.opened, 99))} (bare start → update accepted: "
        f"p50 {fmt_ms(pct(b.opened, 50))}, p99 {fmt_ms(pct(b.opened, 99))})",
        f"bare execute_update_with_start_workflow (start + first step in one call): "
        f"p50 {fmt_ms(pct(with_start, 50))}, p99 {fmt_ms(pct(with_start, 99))}",
        f"step then read: {o.stale} stale GETs in {len(o.read)} steps; "
        f"bare {b.stale} stale queries in {len(b.read)} steps",
    ]
    for p in (50, 99):
        ours_p, bare_p = pct(o.submit, p), pct(b.submit, p)
        h.rows.append(
            Row(
                f"19. submission latency p{p}" + (f" ({n} submissions)" if p == 50 else ""),
                fmt_ms(ours_p),
                fmt_ms(bare_p),
                _ratio(ours_p, bare_p),
                "—",
                "",
            )
        )
    for p in (50, 99):
        ours_p, bare_p = pct(o.first, p), pct(b.first, p)
        h.rows.append(
            Row(
                f"19. submission → first step accepted p{p}"
                + (f" ({mean:.1f} retries/submission)" if p == 50 else ""),
                fmt_ms(ours_p),
                fmt_ms(bare_p),
                _ratio(ours_p, bare_p),
                "0 retries" if p == 50 else "—",
                ("yes" if sum(o.retries) == 0 else "NO") if p == 50 else "",
            )
        )
    for p in (50, 99):
        ours_p, bare_p = pct(o.read, p), pct(b.read, p)
        h.rows.append(
            Row(
                f"19. step then read p{p}"
                + (f" ({len(o.read)} steps, {o.stale} stale reads)" if p == 50 else ""),
                fmt_ms(ours_p),
                fmt_ms(bare_p),
                _ratio(ours_p, bare_p),
                "0 stale reads" if p == 50 else "—",
                ("yes" if o.stale == 0 else "NO") if p == 50 else "",
            )
        )
