"""The soak's two-of-everything mode (issue 19, item 4; `python -m bench.soak --workers 2 --apis
2`): what must hold beyond the soak's own invariants when two workers and two APIs share one
Temporal namespace and one database, as production runs them.

- The yearly stewardship schedule (app/schedules.py) is applied by every worker at start-up, the
  two first ones at the same moment: exactly one schedule exists at the end, as it was once both
  had applied it, created once and updated by every other start, and it never started a run.
- One deprecation notice sent to each API directly, at the same moment (mid-soak, while workers
  are killed): both answer with the one notice, its fan-out runs once (one run) and each
  affected partner — partners of its own, on an API version nobody else has — gets exactly one
  migration, which rests at its plan window; its projection equals its workflow's status.
  (Its histories join the soak's audit, non-determinism and replay checks.)
- The audit log's hash chain, appended to by both workers' activities at once, is unbroken
  (`kwanus audit verify`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from temporalio.client import Client, WorkflowExecutionStatus

from app import schedules
from bench.drive import Driver, Headers
from kwanus import contract
from policy.deprecation import migration_id
from store import audit, repo
from store.db import Database

# Partners of the notice: an API version no soak partner is on, so the notice reaches them only.
NOTICE_API_VERSION = "1.9"
NOTICE = {"kind": "api", "version": NOTICE_API_VERSION, "replacement": "3.0"}
NOTICE_ID = "api-kwanus-1_9"  # the id a notice without one is given (DeprecationNotice)
# Small pages, so the fan-out takes several activities (each one a worker may die in).
FANOUT_BATCH_SIZE = 3
# Where each of its migrations rests: its plan window open, awaiting the partner (90 days).
NOTICE_MIGRATION_REST = ("Plan", "active")


def notice_partners(seed: int, n: int) -> list[str]:
    return [f"dep{seed}-{i}" for i in range(max(4, n // 20))]


def notice_partner_body(partner_id: str) -> dict[str, Any]:
    return {
        "id": partner_id,
        "name": f"Partner {partner_id}",
        "tier": "verified",
        "os_version": "4.2",
        "api_version": NOTICE_API_VERSION,
        "runtime": {"name": "kwanus-runtime", "version": "3.0"},
        "capabilities": [],
        "permissions": ["orders:read"],
    }


# --- the schedule ---------------------------------------------------------------------------


async def schedule_view(client: Client) -> tuple[list[str], str]:
    """Every schedule id on the namespace, and the stewardship schedule as the server describes
    it (spec, action, policy, state) — '' if it is not there."""
    ids = sorted([s.id async for s in await client.list_schedules()])
    if schedules.SCHEDULE_ID not in ids:
        return ids, ""
    desc = await client.get_schedule_handle(schedules.SCHEDULE_ID).describe()
    s = desc.schedule
    action = s.action
    what = getattr(action, "workflow", "?"), getattr(action, "id", "?")
    queue = getattr(action, "task_queue", "?")
    return ids, f"{s.spec!r} | {what} on {queue} | {s.policy!r} | {s.state!r}"


@dataclass
class ScheduleCheck:
    ids: list[str]
    unchanged: bool
    created: int  # "schedule … created" in the workers' logs
    updated: int
    failed: int  # "could not apply schedule"
    worker_starts: int
    actions: int  # runs the schedule started (none is due in a soak)
    problems: list[str] = field(default_factory=list)

    @property
    def figure(self) -> str:
        same = "unchanged" if self.unchanged else "CHANGED"
        return (
            f"{len(self.ids)} ({', '.join(self.ids) or 'none'}): created {self.created}, "
            f"updated {self.updated}, failed {self.failed} over {self.worker_starts} worker "
            f"starts; {same}; {self.actions} runs"
        )


async def check_schedule(
    client: Client, before: str, worker_logs: str, worker_starts: int
) -> ScheduleCheck:
    ids, now = await schedule_view(client)
    actions = 0
    if now:
        desc = await client.get_schedule_handle(schedules.SCHEDULE_ID).describe()
        actions = desc.info.num_actions + len(desc.info.running_actions)
    name = re.escape(schedules.SCHEDULE_ID)
    c = ScheduleCheck(
        ids=ids,
        unchanged=bool(now) and now == before,
        created=len(re.findall(rf"schedule {name} created", worker_logs)),
        updated=len(re.findall(rf"schedule {name} updated", worker_logs)),
        failed=len(re.findall(rf"could not apply schedule {name}", worker_logs)),
        worker_starts=worker_starts,
        actions=actions,
    )
    if ids != [schedules.SCHEDULE_ID]:
        c.problems.append(f"schedules on the namespace: {ids} (expected one)")
    if not c.unchanged:
        c.problems.append(f"schedule changed: before {before!r}, after {now!r}")
    if c.created != 1:
        c.problems.append(f"schedule created {c.created} times (expected once)")
    if c.created + c.updated != worker_starts or c.failed:
        c.problems.append(
            f"schedule applied {c.created + c.updated} times, {c.failed} failed, over "
            f"{worker_starts} worker starts"
        )
    if actions:
        c.problems.append(f"the schedule started {actions} runs")
    return c


# --- the deprecation notice through both APIs -----------------------------------------------


@dataclass
class NoticeSent:
    answers: list[str] = field(default_factory=list)  # per API: "<status> <id>"
    retries: int = 0


async def send_notice_to_each(urls: list[str], tsc: Headers) -> NoticeSent:
    """The same notice to every API directly, all at once; each call ridden through crashes
    like every soak call (a 5xx or no answer is sent again)."""
    async with contextlib.AsyncExitStack() as stack:
        drivers = [
            Driver(await stack.enter_async_context(httpx.AsyncClient(base_url=u, timeout=60)), tsc)
            for u in urls
        ]
        resps = await asyncio.gather(
            *(
                d.call("POST", "/v1/deprecations", headers=tsc, json=NOTICE, ok=(202,))
                for d in drivers
            )
        )
    sent = NoticeSent(retries=sum(d.retries for d in drivers))
    for r in resps:
        body = r.json() if r.headers.get("content-type", "").endswith("json") else {}
        sent.answers.append(f"{r.status_code} {body.get('id', r.text[:80])}")
    return sent


@dataclass
class NoticeCheck:
    sent: NoticeSent
    partners: int
    fanout_runs: int = 0
    fanout_status: str = ""
    progress: dict[str, int] = field(default_factory=dict)
    migrations: int = 0  # distinct migration ids of the notice in Temporal
    migration_runs: int = 0  # their runs (one each: a second run is a second migration)
    at_rest: int = 0  # in (Plan, active), open
    projection_equal: int = 0
    workflow_ids: list[str] = field(default_factory=list)  # for the audit and replay checks
    problems: list[str] = field(default_factory=list)

    @property
    def figure(self) -> str:
        p = self.progress
        return (
            f"answers {' / '.join(self.sent.answers)}; fan-out runs {self.fanout_runs} "
            f"({self.fanout_status}, affected {p.get('affected')}, started {p.get('started')}, "
            f"pages {p.get('batches')})"
        )


async def _rest(client: Client, workflow_id: str, stage: str | None, within: float) -> str:
    """Closed, or (stage given) open at `stage` with no activity pending."""
    handle = client.get_workflow_handle(workflow_id)
    give_up = asyncio.get_running_loop().time() + within
    while True:
        with contextlib.suppress(Exception):
            desc = await handle.describe()
            if desc.status is not WorkflowExecutionStatus.RUNNING:
                return desc.status.name if desc.status else "?"
            pending = desc.raw_description.pending_activities
            if (
                stage is not None
                and not pending
                and (await handle.query("status"))["stage"] == stage
            ):
                return "RUNNING"
        if asyncio.get_running_loop().time() > give_up:
            return "RUNNING (not settled)"
        await asyncio.sleep(1.0)


async def check_notice(
    client: Client, db: Database, sent: NoticeSent, partners: list[str], within: float
) -> NoticeCheck:
    c = NoticeCheck(sent=sent, partners=len(partners))
    if sent.answers != [f"202 {NOTICE_ID}"] * len(sent.answers):
        c.problems.append(f"the notice's answers: {sent.answers}")
    fanout = contract.deprecation_workflow_id(NOTICE_ID)
    c.fanout_status = await _rest(client, fanout, None, within)
    expected = {contract.migration_workflow_id(migration_id(NOTICE_ID, p)) for p in partners}
    rests = await asyncio.gather(
        *(_rest(client, w, NOTICE_MIGRATION_REST[0], within) for w in sorted(expected))
    )
    query = f"WorkflowType = '{contract.MIGRATION.name}' OR WorkflowId = '{fanout}'"
    runs = Counter([wf.id async for wf in client.list_workflows(query)])
    c.fanout_runs = runs.pop(fanout, 0)
    mine = {w: k for w, k in runs.items() if w.startswith(f"migration-{NOTICE_ID}.")}
    c.migrations, c.migration_runs = len(mine), sum(mine.values())
    c.workflow_ids = [fanout, *sorted(mine)]
    if c.fanout_runs != 1 or c.fanout_status != "COMPLETED":
        c.problems.append(f"fan-out: {c.fanout_runs} runs, {c.fanout_status}")
    if set(mine) != expected or c.migration_runs != len(expected):
        extra, lacking = sorted(set(mine) - expected), sorted(expected - set(mine))
        twice = sorted(w for w, k in mine.items() if k > 1)
        c.problems.append(f"migrations: unexpected {extra}, missing {lacking}, twice {twice}")
    if c.fanout_runs:
        state = await client.get_workflow_handle(fanout).query("status")
        c.progress = dict(state["progress"])
        if c.progress.get("affected") != len(partners):
            c.problems.append(f"fan-out progress {c.progress}: expected {len(partners)} affected")
    for wid, rest in zip(sorted(expected), rests, strict=True):
        if wid not in mine:
            continue
        try:
            state = await client.get_workflow_handle(wid).query("status")
        except Exception as exc:  # reported, like the soak's own processes
            c.problems.append(f"{wid}: no status: {str(exc)[:200]}")
            continue
        got = (state["stage"], state["status"])
        if got == NOTICE_MIGRATION_REST and rest == "RUNNING":
            c.at_rest += 1
        else:
            c.problems.append(f"{wid}: {got}, {rest}, expected {NOTICE_MIGRATION_REST} open")
        with db.session() as session:
            row = repo.get_process(session=session, workflow_id=wid)
        projected = (row.stage, row.status) if row else None
        if projected == got:
            c.projection_equal += 1
        else:
            c.problems.append(f"{wid}: store {projected}, workflow {got}")
    with db.session() as session:
        rows = repo.list_processes(
            session=session, kind=contract.MIGRATION.kind, limit=100_000, summaries=True
        )
        stored = [
            r.workflow_id for r in rows if r.workflow_id.startswith(f"migration-{NOTICE_ID}.")
        ]
    if sorted(stored) != sorted(expected):
        c.problems.append(f"store: {len(stored)} migrations of the notice, {len(expected)} due")
    return c


# --- the audit chain -----------------------------------------------------------------------


def check_chain(db: Database) -> tuple[str, list[str]]:
    """`kwanus audit verify` on the soak's database: the figure, and the break if any."""
    with db.session() as session:
        verdict = audit.verify(session)
    if verdict.intact:
        return f"intact, {verdict.rows} rows", []
    return f"BROKEN at {verdict.first_break}", [f"audit chain: {verdict.first_break}"]


# --- requests per API -----------------------------------------------------------------------

ACCESS_LINE = re.compile(r'" \d{3}\b')  # uvicorn's access log: `… "GET /v1/… HTTP/1.1" 200 OK`


def requests_served(log: str) -> int:
    return len(ACCESS_LINE.findall(log))
