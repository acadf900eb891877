"""Performance, side by side with bare Temporal (issue 9, items 1-5): one command starts its own
dev server, worker and API on free loopback ports (`bench.stack.Processes`) plus a bare worker
(`bench.baseline`) on its own task queue, runs each scenario against the same server, and prints
one table — our figure, the bare-Temporal baseline measured in the same run, the ratio and the
target — then a CPU profile of every process per scenario.

    .venv/bin/python -m bench.perf                 # full size: 10,000 partners, …
    .venv/bin/python -m bench.perf --quick         # 500 partners, 10 proposals: a minute or two
    .venv/bin/python -m bench.perf --only votes,reads --partners 2000

Scenarios (bench/RESULTS.md defines each baseline):
  lifecycle  N expansions driven submission → release over HTTP vs the same Temporal calls direct
  votes      POST …/votes latency vs a bare `execute_update` of the same vote
  fanout     POST /v1/deprecations reaching every partner vs bare `start_workflow` of a trivial one
  parked     the fan-out's migrations parked on their timers: worker RSS, server DB, restart
  reads      GET /v1/migrations (partner, stage), /v1/me/pending vs bare visibility list calls
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, text
from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from bench import baseline
from bench.drive import bearer
from bench.stack import Processes, wait_for_temporal
from kwanus import contract
from kwanus.contract import Refusal
from kwanus.models import Act, Actor, ExpansionInput, ExpansionStatus, canonical_sha256
from kwanus.settings import Settings
from kwanus.temporal import start_process
from policy.forms import ImplementationReport, IntegrationPlan, Release
from policy.proposal import Proposal
from policy.review import Review
from policy.vocabulary import Body, ExpansionStage, ProcessKind, Role
from policy.vote import Vote
from store import repo
from store.db import Database
from store.schemas import PartnerCreate, Runtime, TokenCreate
from store.tables import AuditEvent, Partner, Process, utcnow
from testdata.factories import IMPLEMENTATION, INTEGRATION_PLAN, RELEASE, proposal_body, review
from workflows.expansion import PartnerExpansion

SCENARIOS = ("lifecycle", "votes", "fanout", "parked", "reads")
# The fan-out's starts in flight (activities/processes.py START_CONCURRENCY): the baseline's too.
FANOUT_CONCURRENCY = 32
BASE_QUEUE = "bench-baseline"
NOTICE_ID = "bench-os-42"
RETRY_PAUSE = 0.05  # a step sent before it is awaited is sent again after this (both sides)
PROPOSAL: dict[str, Any] = proposal_body()
VOTE = {"decision": "approve", "rationale": "bench"}


class BenchError(Exception):
    pass


# --- measuring ------------------------------------------------------------------------------


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


@dataclass
class Row:
    scenario: str
    ours: str
    base: str
    ratio: str
    target: str
    met: str


@dataclass
class Profile:
    scenario: str
    wall: float
    cpu: dict[str, float]
    notes: list[str] = field(default_factory=list)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# --- the bench ------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, state_dir: Path) -> None:
        self.args = args
        self.procs = Processes(state_dir, out=lambda _line: None)
        self.procs.stack.env.update(
            {
                "KWANUS_MAX_CACHED_WORKFLOWS": str(args.max_cached),
                "KWANUS_FANOUT_BATCH_SIZE": str(args.fanout_batch),
            }
        )
        self.rows: list[Row] = []
        self.profiles: list[Profile] = []
        self.notes: list[str] = []
        self.db: Database
        self.client: Client
        self.http: httpx.AsyncClient
        self.headers: dict[str, dict[str, str]] = {}
        self.actors: dict[str, Actor] = {}
        self.base_proc: Any = None
        self.fanout_done = False

    # -- set-up -------------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    async def start(self) -> None:
        self.log(f"state in {self.procs.settings.state_dir}")
        self.procs.prepare()
        await self.procs.start_server()
        self.client = await Client.connect(
            self.procs.settings.temporal_address,
            namespace=self.procs.settings.temporal_namespace,
            data_converter=pydantic_data_converter,
        )
        await wait_for_temporal(self.client)
        await self.start_worker()
        await self.procs.start_api()
        await self.start_baseline_worker()
        self.db = Database(self.procs.settings.database_url)
        self.http = httpx.AsyncClient(
            base_url=self.procs.api_url,
            timeout=httpx.Timeout(120.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.seed()
        self.log(
            f"stack up: temporal {self.procs.settings.temporal_address}, api {self.procs.api_url}"
        )

    async def start_worker(self) -> None:
        await self.procs.start_worker()

    async def until_logged(self, log: Path, offset: int, line: bytes, proc: Any) -> None:
        def logged() -> bool:
            if not log.exists():
                return False
            with log.open("rb") as fh:
                fh.seek(offset)
                return line in fh.read()

        give_up = time.monotonic() + 60
        while True:
            if await asyncio.to_thread(logged):
                return
            if proc.poll() is not None or time.monotonic() > give_up:
                raise BenchError(f"{log.stem} did not start (see {log})")
            await asyncio.sleep(0.1)

    async def start_baseline_worker(self) -> None:
        log = self.procs.logs / "baseline.log"
        offset = log.stat().st_size if log.exists() else 0
        self.base_proc = self.procs.stack.spawn(
            "baseline",
            [
                sys.executable,
                "-m",
                "bench.baseline",
                "--address",
                self.procs.settings.temporal_address,
                "--task-queue",
                BASE_QUEUE,
                "--max-cached",
                str(self.args.max_cached),
            ],
            log=True,
        )
        await self.until_logged(log, offset, baseline.READY.encode(), self.base_proc)

    def seed(self) -> None:
        """Partners and tokens straight into the store (set-up, not measured): the fan-out's
        partners on OS 4.2 (every one affected by the notice) and the expansions' partners on
        5.0 (none affected)."""
        a = self.args
        now = utcnow()
        # What registering {"capabilities": ["orders-dashboard"], "permissions": ["orders:read"]}
        # stores (store.repo.create_partner): the capability as a grant of kind `unknown`.
        held = PartnerCreate(
            id="seed",
            name="seed",
            tier="verified",
            os_version="4.2",
            api_version="2.1",
            runtime=Runtime(name="kwanus-runtime", version="3.0"),
            capabilities=["orders-dashboard"],
            permissions=["orders:read"],
        ).holdings
        grants = [g.model_dump(mode="json") for g in held.grants]

        def partner(pid: str, os_version: str) -> dict[str, Any]:
            return {
                "id": pid,
                "name": pid,
                "tier": "verified",
                "status": "active",
                "os_version": os_version,
                "api_version": "2.1",
                "runtime_name": "kwanus-runtime",
                "runtime_version": "3.0",
                "grants": grants,
                "registered_permissions": list(held.registered),
                "created_at": now,
            }

        n_exp = a.proposals + a.votes + a.inbox
        rows = [partner(f"fo-{i:05d}", "4.2") for i in range(a.partners)]
        rows += [partner(f"api-{i:04d}", "5.0") for i in range(n_exp)]
        rows += [partner(f"bare-{i:04d}", "5.0") for i in range(n_exp)]
        with self.db.session() as session:
            for start in range(0, len(rows), 2000):
                session.execute(insert(Partner), rows[start : start + 2000])
            session.commit()
            for role in (Role.TSC, Role.SCO, Role.ERC, Role.CGB, Role.OPS):
                made = repo.create_token(session=session, token=TokenCreate(role=role))
                self.headers[role.value] = bearer(made.token)
                self.actors[role.value] = Actor(role=role, token_id=made.id)
            for pid in [f"api-{i:04d}" for i in range(n_exp)] + ["fo-00000", "fo-00001"]:
                made = repo.create_token(
                    session=session, token=TokenCreate(role=Role.PARTNER, partner_id=pid)
                )
                self.headers[pid] = bearer(made.token)
            self.policy = repo.current_policy(session=session)
        for i in range(n_exp):
            pid = f"bare-{i:04d}"
            self.actors[pid] = Actor(role=Role.PARTNER, token_id=f"bench-{pid}", partner_id=pid)

    def cpu_snapshot(self) -> dict[str, float]:
        p = self.procs
        return {
            "server": cpu_s(p.server.pid if p.server else None),
            "worker": cpu_s(p.worker.pid if p.worker else None),
            "api": cpu_s(p.api.pid if p.api else None),
            "bare worker": cpu_s(self.base_proc.pid if self.base_proc else None),
            "bench": time.process_time(),
        }

    async def profiled(
        self, name: str, work: Callable[[], Awaitable[Any]], notes: list[str] | None = None
    ) -> Any:
        before = self.cpu_snapshot()
        t0 = time.monotonic()
        result = await work()
        wall = time.monotonic() - t0
        after = self.cpu_snapshot()
        cpu = {k: after[k] - before[k] for k in before}
        self.profiles.append(Profile(name, wall, cpu, notes if notes is not None else []))
        return result

    async def quiet(self, pid: int | None, *, within: float = 600.0) -> float:
        """Wait until a process has been idle (< 3 % of a core) for two seconds; returns the
        seconds waited."""
        t0 = time.monotonic()
        idle = 0
        last = cpu_s(pid)
        while idle < 2 and time.monotonic() - t0 < within:
            await asyncio.sleep(1.0)
            now = cpu_s(pid)
            idle = idle + 1 if now - last < 0.03 else 0
            last = now
        return time.monotonic() - t0

    # -- driving an expansion: over HTTP, and the same calls straight to Temporal ---------------

    async def api_step(self, eid: str, action: str, body: dict[str, Any], who: str) -> Any:
        """POST one step; a 409 (not awaited yet) is sent again after a short pause."""
        give_up = time.monotonic() + 300
        while True:
            resp = await self.http.post(
                f"/v1/expansions/{eid}/{action}", json=body, headers=self.headers[who]
            )
            if resp.status_code == 200:
                return resp.json()
            # 404: submitted, but its first event is not stored yet and the workflow did not
            # answer the API's query within 5 s (a busy worker) — the step is sent again.
            if resp.status_code not in (404, 409) or time.monotonic() > give_up:
                raise BenchError(f"{eid} {action} by {who}: {resp.status_code} {resp.text}")
            await asyncio.sleep(RETRY_PAUSE)

    async def api_state(self, eid: str, who: str) -> Any:
        resp = await self.http.get(f"/v1/expansions/{eid}", headers=self.headers[who])
        if resp.status_code != 200:
            raise BenchError(f"GET {eid}: {resp.status_code} {resp.text}")
        return resp.json()

    async def api_to_votes(self, i: int, eid: str) -> None:
        pid = f"api-{i:04d}"
        resp = await self.http.post(
            "/v1/expansions", json={**PROPOSAL, "id": eid}, headers=self.headers[pid]
        )
        if resp.status_code != 202:
            raise BenchError(f"submit {eid}: {resp.status_code} {resp.text}")
        for body in Body:
            await self.api_step(eid, "reviews", review(body), body.value)
        while (step := (await self.api_state(eid, pid))["step"]) not in ("votes", "plans"):  # noqa: ASYNC110
            await asyncio.sleep(RETRY_PAUSE)
        if step == "plans":
            raise BenchError(f"{eid}: the bench proposal should not need risk plans")

    async def api_lifecycle(self, i: int) -> None:
        eid = f"api-life-{i}"
        pid = f"api-{i:04d}"
        await self.api_to_votes(i, eid)
        for body in Body:
            state = await self.api_step(eid, "votes", VOTE, body.value)
            if state["decision"] is not None:
                break
        for action, form in (
            ("integration-plan", INTEGRATION_PLAN),
            ("implementation", IMPLEMENTATION),
            ("release", RELEASE),
        ):
            await self.api_step(eid, action, form, pid)

    async def bare_step(self, handle: WorkflowHandle[Any, Any], update: str, act: Act[Any]) -> Any:
        give_up = time.monotonic() + 300
        while True:
            try:
                return await handle.execute_update(update, act, result_type=ExpansionStatus)
            except WorkflowUpdateFailedError as exc:
                cause = exc.cause
                if not (
                    isinstance(cause, ApplicationError)
                    and cause.type == Refusal.WRONG_STAGE
                    and time.monotonic() < give_up
                ):
                    raise
            await asyncio.sleep(RETRY_PAUSE)

    async def bare_to_votes(self, i: int, eid: str) -> WorkflowHandle[Any, Any]:
        await self.bare_submit(i, eid)
        workflow_id = contract.expansion_workflow_id(eid)
        handle = self.client.get_workflow_handle(workflow_id)
        for body in Body:
            act = Act[Any](actor=self.actors[body.value], body=Review.model_validate(review(body)))
            await self.bare_step(handle, "review", act)
        while True:
            state = await handle.query("status", result_type=ExpansionStatus)
            if state.step in ("votes", "plans"):
                break
            await asyncio.sleep(RETRY_PAUSE)
        if state.step == "plans":
            raise BenchError(f"{eid}: the bench proposal should not need risk plans")
        return handle

    async def bare_lifecycle(self, i: int) -> None:
        eid = f"bare-life-{i}"
        pid = f"bare-{i:04d}"
        handle = await self.bare_to_votes(i, eid)
        for body in Body:
            act = Act[Any](actor=self.actors[body.value], body=Vote.model_validate(VOTE))
            state = await self.bare_step(handle, "vote", act)
            if state.decision is not None:
                break
        partner = self.actors[pid]
        for update, form in (
            ("integration_plan", IntegrationPlan.model_validate(INTEGRATION_PLAN)),
            ("implementation", ImplementationReport.model_validate(IMPLEMENTATION)),
            ("release", Release.model_validate(RELEASE)),
        ):
            await self.bare_step(handle, update, Act[Any](actor=partner, body=form))

    # -- scenarios ------------------------------------------------------------------------------

    async def lifecycle(self) -> None:
        n = self.args.proposals
        self.log(f"lifecycle: {n} expansions over HTTP, then {n} straight to Temporal")

        async def ours() -> None:
            await asyncio.gather(*(self.api_lifecycle(i) for i in range(n)))

        async def bare() -> None:
            await asyncio.gather(*(self.bare_lifecycle(i) for i in range(n)))

        t0 = time.monotonic()
        await self.profiled("lifecycle (ours, HTTP)", ours)
        t_ours = time.monotonic() - t0
        await self.quiet(self.procs.worker.pid if self.procs.worker else None)
        t0 = time.monotonic()
        await self.profiled("lifecycle (bare client)", bare)
        t_base = time.monotonic() - t0
        ratio = t_base / t_ours
        self.rows.append(
            Row(
                f"2. lifecycle: {n} expansions submission → release",
                f"{n / t_ours:.2f}/s ({t_ours:.1f} s)",
                f"{n / t_base:.2f}/s ({t_base:.1f} s)",
                f"{ratio:.2f}",
                "≥ 0.8",
                "yes" if ratio >= 0.8 else "NO",
            )
        )
        await self.quiet(self.procs.worker.pid if self.procs.worker else None)

    async def votes(self) -> None:
        m = self.args.votes
        off = self.args.proposals
        self.log(f"votes: {m} expansions each side brought to the vote")
        await asyncio.gather(
            *(self.api_to_votes(off + i, f"api-vote-{i}") for i in range(m)),
            *(self.bare_to_votes(off + i, f"bare-vote-{i}") for i in range(m)),
        )
        await self.quiet(self.procs.worker.pid if self.procs.worker else None)
        ours: list[float] = []
        bare: list[float] = []

        async def run() -> None:
            # Alternated, one at a time: the same vote (same body, same position) on a twin
            # expansion, so both sides see the same server load and the same workflow state.
            for i in range(m):
                handle = self.client.get_workflow_handle(
                    contract.expansion_workflow_id(f"bare-vote-{i}")
                )
                for body in Body:
                    t0 = time.perf_counter()
                    resp = await self.http.post(
                        f"/v1/expansions/api-vote-{i}/votes",
                        json=VOTE,
                        headers=self.headers[body.value],
                    )
                    ours.append(time.perf_counter() - t0)
                    if resp.status_code != 200:
                        raise BenchError(f"vote api-vote-{i}: {resp.status_code} {resp.text}")
                    act = Act[Any](actor=self.actors[body.value], body=Vote.model_validate(VOTE))
                    t0 = time.perf_counter()
                    state = await handle.execute_update("vote", act, result_type=ExpansionStatus)
                    bare.append(time.perf_counter() - t0)
                    if resp.json()["decision"] is not None or state.decision is not None:
                        break

        await self.profiled("votes (alternated)", run)
        p50, b50 = pct(ours, 50), pct(bare, 50)
        p99, b99 = pct(ours, 99), pct(bare, 99)
        self.rows.append(
            Row(
                f"3. vote latency p50 ({len(ours)} votes)",
                fmt_ms(p50),
                fmt_ms(b50),
                f"{p50 / b50:.2f}x",
                "≤ 1.5x",
                "yes" if p50 <= 1.5 * b50 else "NO",
            )
        )
        self.rows.append(
            Row(
                "3. vote latency p99",
                fmt_ms(p99),
                fmt_ms(b99),
                f"{p99 / b99:.2f}x",
                "—",
                "",
            )
        )

    def count_notices(self) -> int:
        with self.db.session() as session:
            return int(
                session.exec(
                    select(func.count())
                    .select_from(AuditEvent)
                    .where(col(AuditEvent.event) == "notice")
                    .where(col(AuditEvent.process) == ProcessKind.MIGRATION.value)
                ).one()
            )

    def count_stage(self, stage: str) -> int:
        with self.db.session() as session:
            return int(
                session.exec(
                    select(func.count())
                    .select_from(Process)
                    .where(col(Process.kind) == ProcessKind.MIGRATION.value)
                    .where(col(Process.stage) == stage)
                ).one()
            )

    async def fanout(self, with_baseline: bool) -> None:
        n = self.args.partners
        tdb = self.procs.settings.temporal_db_file
        self.db_before_fanout = files_mb(tdb)
        self.log(f"fan-out: POST /v1/deprecations to {n} partners")
        marks: dict[str, float] = {}

        async def ours() -> None:
            t0 = time.monotonic()
            resp = await self.http.post(
                "/v1/deprecations",
                json={"id": NOTICE_ID, "kind": "os", "version": "4.2", "replacement": "5.0"},
                headers=self.headers["TSC"],
            )
            marks["http"] = time.monotonic() - t0
            if resp.status_code != 202:
                raise BenchError(f"deprecation: {resp.status_code} {resp.text}")
            last_log = t0
            while (done := await asyncio.to_thread(self.count_notices)) < n:
                if time.monotonic() - last_log > 15:
                    self.log(f"  fan-out: {done}/{n} notices recorded")
                    last_log = time.monotonic()
                if time.monotonic() - t0 > self.args.timeout:
                    raise BenchError(f"fan-out: {done}/{n} notices after {self.args.timeout} s")
                await asyncio.sleep(0.5)
            marks["notices"] = time.monotonic() - t0
            while await asyncio.to_thread(self.count_stage, "Plan") < n:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
            marks["parked"] = time.monotonic() - t0

        notes: list[str] = []
        await self.profiled("fan-out (ours)", ours, notes)
        notes.append(
            f"202 in {fmt_ms(marks['http'])}; every notice + fallback at {marks['notices']:.1f} s;"
            f" every migration parked at Plan at {marks['parked']:.1f} s"
        )
        self.fanout_done = True
        self.db_after_fanout = files_mb(tdb)
        t_ours = marks["notices"]
        await self.quiet(self.procs.worker.pid if self.procs.worker else None)
        if not with_baseline:
            return
        self.log(f"fan-out baseline: {n} start_workflow(BenchTrivial), {FANOUT_CONCURRENCY} lanes")
        t_base = await self.profiled("fan-out (bare starts)", lambda: self.bare_starts(n))
        ours_rate, base_rate = n / t_ours, n / t_base
        mine = await self.history_shape(
            contract.migration_workflow_id(f"{NOTICE_ID}.fo-{n - 1:05d}")
        )
        theirs = await self.history_shape(f"bench-trivial-{n - 1}")
        notes.append(f"one parked migration's history: {mine}; one trivial workflow's: {theirs}")
        ratio = ours_rate / base_rate
        self.rows.append(
            Row(
                f"1. fan-out: {n} partners → notice + fallback",
                f"{ours_rate:.1f}/s ({t_ours:.1f} s)",
                f"{base_rate:.1f}/s ({t_base:.1f} s)",
                f"{ratio:.2f}",
                "≥ 0.8",
                "yes" if ratio >= 0.8 else "NO",
            )
        )

    async def history_shape(self, workflow_id: str) -> str:
        """Events, workflow tasks and activities in one run's history: the work behind it."""
        history = await self.client.get_workflow_handle(workflow_id).fetch_history()
        kinds = Counter(EventType.Name(e.event_type) for e in history.events)
        return (
            f"{len(history.events)} events, "
            f"{kinds['EVENT_TYPE_WORKFLOW_TASK_COMPLETED']} workflow tasks, "
            f"{kinds['EVENT_TYPE_ACTIVITY_TASK_SCHEDULED']} activities"
        )

    async def bare_starts(self, n: int, *, parked: bool = False) -> float:
        """`n` bare starts in FANOUT_CONCURRENCY lanes; the time until every one has started and
        (trivial) completed, or (parked) been started."""
        t0 = time.monotonic()
        todo = iter(range(n))
        handles: list[WorkflowHandle[Any, Any]] = []
        prefix = "bench-parked" if parked else "bench-trivial"

        async def lane() -> None:
            for i in todo:
                h: WorkflowHandle[Any, Any] = await self.client.start_workflow(
                    "BenchParked" if parked else "BenchTrivial",
                    365 if parked else i,
                    id=f"{prefix}-{i}",
                    task_queue=BASE_QUEUE,
                )
                handles.append(h)

        await asyncio.gather(*(lane() for _ in range(FANOUT_CONCURRENCY)))
        if not parked:
            # Completed, counted the way ours is: a cheap count polled every 0.5 s (awaiting
            # each result would add a history long-poll per workflow to the server's work).
            query = "WorkflowType='BenchTrivial' AND ExecutionStatus='Completed'"
            while (await self.client.count_workflows(query)).count < n:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
        return time.monotonic() - t0

    async def parked(self) -> None:
        n = self.args.partners
        p = self.procs
        assert p.worker is not None
        tdb = p.settings.temporal_db_file
        await self.quiet(p.worker.pid)
        rss_ours = rss_mb(p.worker.pid)
        db_ours = self.db_after_fanout - self.db_before_fanout
        app_db = files_mb(Path(p.settings.database_url.removeprefix("sqlite:///")))
        self.log(f"parked: {n} bare BenchParked workflows for the baseline")
        before = files_mb(tdb)
        t_park = await self.profiled(
            "parked (bare starts)", lambda: self.bare_starts(n, parked=True)
        )
        await self.quiet(self.base_proc.pid)
        rss_base = rss_mb(self.base_proc.pid)
        db_base = files_mb(tdb) - before
        self.rows.append(
            Row(
                f"4. worker RSS, {n} parked (cache {self.args.max_cached})",
                f"{rss_ours:.0f} MB",
                f"{rss_base:.0f} MB",
                f"{rss_ours / rss_base:.2f}x",
                "≤ 300 MB",
                "yes" if rss_ours <= 300 else "NO",
            )
        )
        self.rows.append(
            Row(
                f"4. server DB growth, {n} parked",
                f"{db_ours:.0f} MB ({db_ours * 1e3 / n:.1f} KB each)",
                f"{db_base:.0f} MB ({db_base * 1e3 / n:.1f} KB each)",
                f"{db_ours / db_base:.1f}x" if db_base > 0 else "—",
                "—",
                "",
            )
        )
        self.notes.append(
            f"app database (SQLite, WAL) after the fan-out: {app_db:.0f} MB; "
            f"bare parked starts took {t_park:.1f} s"
        )
        # Restart both workers: ready = polling again; no parked history is replayed up front.
        old = p.terminate_worker()
        if await p.exited(old, 60) is None:
            raise BenchError("the worker did not stop within 60 s")
        p.forget(old)
        t0 = time.monotonic()
        await self.start_worker()
        ready_ours = time.monotonic() - t0
        cpu_after = cpu_s(p.worker.pid if p.worker else None)
        await asyncio.sleep(3.0)
        assert p.worker is not None
        idle_cpu = cpu_s(p.worker.pid) - cpu_after
        rss_restart = rss_mb(p.worker.pid)
        # One parked migration asked to move on: only its own history is replayed.
        plan = {
            "strategy": "s",
            "compatibility_plan": "c",
            "testing_plan": "t",
            "rollback_plan": "r",
        }

        async def timed_plan(partner: str) -> float:
            t0 = time.perf_counter()
            resp = await self.http.post(
                f"/v1/migrations/{NOTICE_ID}.{partner}/plan",
                json=plan,
                headers=self.headers[partner],
            )
            if resp.status_code != 200:
                raise BenchError(f"plan after restart: {resp.status_code} {resp.text}")
            return time.perf_counter() - t0

        first_step = await timed_plan("fo-00000")
        second_step = await timed_plan("fo-00001")
        self.base_proc.terminate()
        self.base_proc.wait(timeout=60)
        p.forget(self.base_proc)
        t0 = time.monotonic()
        await self.start_baseline_worker()
        ready_base = time.monotonic() - t0
        self.rows.append(
            Row(
                f"4. restarted worker ready, {n} parked",
                f"{ready_ours:.1f} s",
                f"{ready_base:.1f} s",
                f"{ready_ours / ready_base:.2f}x",
                "no up-front replay",
                "yes" if idle_cpu < 0.5 else "NO",
            )
        )
        self.rows.append(
            Row(
                "4. first step on a parked migration after restart",
                fmt_ms(first_step),
                "—",
                "—",
                "—",
                "",
            )
        )
        self.notes.append(
            f"restarted worker: {idle_cpu:.2f} CPU-s in its first 3 s polling (no replay of "
            f"parked histories), RSS {rss_restart:.0f} MB; first plan on a parked migration "
            f"{fmt_ms(first_step)} (replays that one history), the next {fmt_ms(second_step)}"
        )

    async def reads(self) -> None:
        n = self.args.samples
        inbox = self.args.inbox
        off = self.args.proposals + self.args.votes
        self.log(f"reads: {inbox} expansions awaiting the bodies' reviews, {n} samples per read")
        # A body's inbox: expansions in Evaluation awaiting all four reviews.
        await asyncio.gather(*(self.bare_submit(off + i, f"bare-inbox-{i}") for i in range(inbox)))
        with self.db.session() as session:
            total = session.exec(select(func.count()).select_from(Process)).one()
            pend = session.execute(text("select count(*) from pending_action")).scalar_one()
        self.notes.append(f"reads ran with {total} processes and {pend} pending actions stored")
        await self.quiet(self.procs.worker.pid if self.procs.worker else None)
        partner = f"fo-{self.args.partners // 2:05d}"
        pages: dict[str, str | None] = {"after": None}

        def stage_params() -> dict[str, str]:
            params = {"stage": "Plan", "limit": "100"}
            if pages["after"]:
                params["after"] = str(pages["after"])
            return params

        async def walk_stage(resp: httpx.Response) -> None:
            items = resp.json()
            pages["after"] = items[-1]["workflow_id"] if len(items) == 100 else None

        reads: list[tuple[str, str, dict[str, Any], str, str]] = [
            (
                f"GET /v1/migrations?partner_id (of {self.args.partners})",
                "/v1/migrations",
                {"partner_id": partner},
                "TSC",
                f"KwanusProcess='migration' AND KwanusPartnerId='{partner}'",
            ),
            (
                "GET /v1/migrations?stage=Plan, keyset pages of 100",
                "/v1/migrations",
                {},
                "TSC",
                "KwanusProcess='migration' AND KwanusStage='Plan'",
            ),
            (
                "GET /v1/me/pending (body TSC)",
                "/v1/me/pending",
                {},
                "TSC",
                "KwanusProcess='expansion' AND KwanusStage='Evaluation' "
                "AND ExecutionStatus='Running'",
            ),
            (
                "GET /v1/me/pending (a partner)",
                "/v1/me/pending",
                {},
                "fo-00001",
                "KwanusPartnerId='fo-00001' AND ExecutionStatus='Running'",
            ),
        ]
        for title, url, params, who, query in reads:
            ours: list[float] = []
            bare: list[float] = []
            staged = "stage" in title

            async def sample(
                url: str = url,
                params: dict[str, Any] = params,
                who: str = who,
                query: str = query,
                staged: bool = staged,
                ours: list[float] = ours,
                bare: list[float] = bare,
            ) -> None:
                for _ in range(n):
                    t0 = time.perf_counter()
                    resp = await self.http.get(
                        url, params=stage_params() if staged else params, headers=self.headers[who]
                    )
                    ours.append(time.perf_counter() - t0)
                    if resp.status_code != 200:
                        raise BenchError(f"GET {url}: {resp.status_code} {resp.text}")
                    if staged:
                        await walk_stage(resp)
                # The baseline after ours, not interleaved: a visibility list of 100 keeps the
                # server busy past its answer, which would land on our next request.
                await self.quiet(self.procs.server.pid if self.procs.server else None, within=20)
                for _ in range(n):
                    t0 = time.perf_counter()
                    [_ async for _ in self.client.list_workflows(query, limit=100, page_size=100)]
                    bare.append(time.perf_counter() - t0)

            await self.profiled(f"reads: {title}", sample)
            p99, b99 = pct(ours, 99), pct(bare, 99)
            self.rows.append(
                Row(
                    f"5. {title} p99 (p50 {fmt_ms(pct(ours, 50))})",
                    fmt_ms(p99),
                    fmt_ms(b99),
                    f"{p99 / b99:.2f}x",
                    "p99 ≤ 50 ms",
                    "yes" if p99 <= 0.050 else "NO",
                )
            )

    async def bare_submit(self, i: int, eid: str) -> None:
        pid = f"bare-{i:04d}"
        proposal = Proposal.model_validate(PROPOSAL)
        sha = canonical_sha256(proposal)
        await start_process(
            self.client,
            PartnerExpansion.run,
            ExpansionInput(
                expansion_id=eid,
                partner_id=pid,
                partner_tier="verified",
                proposal=proposal,
                proposal_sha256=sha,
                policy=self.policy,
                submitted_by=f"bench-{pid}",
            ),
            workflow_id=contract.expansion_workflow_id(eid),
            task_queue=self.procs.settings.task_queue,
            partner_id=pid,
            kind=ProcessKind.EXPANSION.value,
            stage=ExpansionStage.PROPOSAL.value,
            summary=f"Expansion {eid} · partner {pid} · category A",
            memo={"partner_id": pid, "content_sha256": sha},
        )

    # -- report ----------------------------------------------------------------------------------

    def report(self, wall: float) -> str:
        a = self.args
        lines = [
            "",
            f"KWANUS bench — partners {a.partners} (parked = the fan-out's migrations), "
            f"proposals {a.proposals}, vote twins {a.votes}, read samples {a.samples}; "
            f"worker cache {a.max_cached}, fan-out batch {a.fanout_batch}; "
            f"{os.cpu_count()} cores; wall {wall:.0f} s",
            "",
        ]
        head = ("scenario", "ours", "bare Temporal (same run)", "ratio", "target", "met")
        table = [head] + [(r.scenario, r.ours, r.base, r.ratio, r.target, r.met) for r in self.rows]
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
        for prof in self.profiles:
            lines.append(
                "  "
                + prof.scenario[:44].ljust(44)
                + f"{prof.wall:7.1f}s"
                + "".join(f"{prof.cpu[n]:12.1f}s" for n in names)
            )
            lines += [f"    {note}" for note in prof.notes]
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    unknown = only - set(SCENARIOS)
    if unknown:
        print(f"unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    state = Path(args.state_dir or tempfile.mkdtemp(prefix="kwanus-bench-"))
    bench = Bench(args, state)
    t0 = time.monotonic()
    try:
        await bench.start()
        if "lifecycle" in only:
            await bench.lifecycle()
        if "votes" in only:
            await bench.votes()
        if only & {"fanout", "parked", "reads"}:
            await bench.fanout(with_baseline="fanout" in only)
        if "parked" in only:
            await bench.parked()
        if "reads" in only:
            await bench.reads()
    finally:
        print(bench.report(time.monotonic() - t0), flush=True)
        bench.procs.stop()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.perf",
        description="Performance side by side with bare Temporal (issue 9).",
    )
    parser.add_argument("--partners", type=int, default=10_000, help="fan-out and parked size")
    parser.add_argument("--proposals", type=int, default=40, help="lifecycle expansions a side")
    parser.add_argument("--votes", type=int, default=40, help="expansions voted on, a side")
    parser.add_argument("--inbox", type=int, default=40, help="expansions in the bodies' inbox")
    parser.add_argument("--samples", type=int, default=300, help="requests per read")
    parser.add_argument(
        "--max-cached",
        type=int,
        default=Settings.model_fields["max_cached_workflows"].default,
        help="both workers' cache (default: the product's)",
    )
    parser.add_argument("--fanout-batch", type=int, default=200, help="KWANUS_FANOUT_BATCH_SIZE")
    parser.add_argument("--timeout", type=float, default=3600, help="fan-out give-up (s)")
    parser.add_argument("--only", default="", help=f"comma list of {','.join(SCENARIOS)}")
    parser.add_argument("--state-dir", default="", help="default: a new temporary folder")
    parser.add_argument(
        "--quick", action="store_true", help="500 partners, 10 proposals, 10 vote twins"
    )
    args = parser.parse_args()
    if args.quick:
        args.partners, args.proposals, args.votes, args.inbox, args.samples = 500, 10, 10, 10, 100
    code = 1
    try:
        code = asyncio.run(run(args))
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        # A process that used a Temporal client can crash in interpreter finalization.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
