"""Soak (issue 8): N mixed processes driven over the HTTP API while the worker is SIGKILLed at
random and the Temporal dev server is SIGKILLed and restarted once, all real processes
(bench/stack.py). At the end it checks and prints the invariants:

- every process is in the final state its plan says (computed from the seed, never read back);
- the store's projection (stage, status) equals each workflow's `status` query;
- every governance write a run scheduled is in the audit log exactly once (0 duplicates);
- no workflow task failed on non-determinism (histories, the worker log, and every history
  replayed against worker.WORKFLOWS).

    python -m bench.soak --seed 7 --processes 200 --kills 10

`--workers 2 --apis 2` runs production's topology instead: two workers and two APIs on the one
server and database (PostgreSQL with `--database-url`), the APIs behind one round-robin address
(bench/balancer.py) that every soak request goes through on a connection of its own, the kills
spread over both workers — and checks what two of everything could break (bench/soak_two.py):
the stewardship schedule applied once, a deprecation notice sent to both APIs at once fanned out
once, and how many requests each API served.

Exit 0 when every invariant holds, 1 otherwise. Seeded: the plan (kinds, partners, order,
step choices) and the chaos schedule come from `--seed` (bench/soak_plan.py); wall-clock
interleavings do not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError

from bench import soak_two
from bench.balancer import RoundRobin
from bench.checks import (
    check_audit,
    due_writes,
    histories,
    replay_failures,
    scheduled_writes,
    task_failures,
    written_since,
)
from bench.drive import (
    Driver,
    Headers,
    at_step,
    bearer,
    integrate_and_release,
    migration_steps,
    outcome_review,
    review_all,
    vote_all,
)
from bench.soak_plan import (
    MATRIX,
    SCENARIOS,
    Plan,
    Planned,
    make_plan,
    migration_body,
    partner_body,
    policies,
    proposal_body,
)
from bench.stack import Processes, api_name
from kwanus.temporal import connect
from policy.vocabulary import Body
from store import repo
from store.db import Database
from testdata.factories import review


@dataclass
class Run:
    """The soak's live parts and what it counted."""

    plan: Plan
    procs: Processes
    drive: Driver
    bodies: dict[Body, Headers]
    partners: dict[str, Headers]
    out: Callable[[str], None]
    kills: int = 0
    kills_by_worker: Counter[int] = field(default_factory=Counter)
    restarts: int = 0
    started: list[Planned] = field(default_factory=list)
    driver_errors: list[str] = field(default_factory=list)
    chaos_done: asyncio.Event = field(default_factory=asyncio.Event)


async def drive_one(run: Run, p: Planned) -> None:
    """The human steps of one process, as its plan says."""
    d, kind, pid = run.drive, p.scenario.kind, p.pid
    partner = run.partners[p.partner]
    name = p.scenario.name
    if name == "expansion completed":
        await review_all(d, pid, run.bodies)
        await vote_all(d, pid, run.bodies, "approve")
        await integrate_and_release(d, pid, partner)
        await outcome_review(d, pid, run.bodies[Body.CGB])
    elif name == "expansion rejected":
        await review_all(d, pid, run.bodies)
        await vote_all(d, pid, run.bodies, "reject")
    elif name == "expansion withdrawn":
        for body in list(Body)[: p.reviews_before_withdrawal]:
            await d.step(
                kind,
                pid,
                "reviews",
                review(body),
                run.bodies[body],
                awaited=at_step("reviews"),
                done=lambda s, b=body.value: b in s["reviews"],  # type: ignore[misc]
            )
        await d.step(
            kind,
            pid,
            "withdraw",
            {"reason": "soak"},
            partner,
            awaited=at_step("reviews"),
            done=lambda s: s["status"] == "withdrawn",
        )
    elif name == "migration parked":
        await migration_steps(d, pid, partner)
    elif name == "migration declined":
        await d.step(
            kind,
            pid,
            "decline",
            {"reason": "soak"},
            partner,
            awaited=at_step("plan"),
            done=lambda s: s["status"] == "declined",
        )
    # expansion expired, migration enforced: nobody acts; their timers end or enforce them.


async def starter(
    run: Run, texts: dict[str, dict[str, Any]], drivers: list[asyncio.Task[None]]
) -> None:
    """Start the processes in plan order at the plan's pace, each under its policy version,
    and hand each to its driver."""
    d = run.drive
    current = ""
    tsc, sco = run.bodies[Body.TSC], run.bodies[Body.SCO]
    limit = asyncio.Semaphore(16)  # people acting at once (each polls its process's state)

    async def guarded(p: Planned) -> None:
        async with limit:
            try:
                await drive_one(run, p)
            except Exception as exc:  # reported with the figures, never silently
                run.driver_errors.append(f"{p.pid} ({p.scenario.name}): {exc}")

    for p in run.plan.processes:
        await asyncio.sleep(p.gap)
        if p.scenario.profile != current:
            await d.put_policy(texts[p.scenario.profile])
            current = p.scenario.profile
        if p.scenario.kind == "expansions":
            await d.start("expansions", proposal_body(p.pid), run.partners[p.partner])
        else:
            body = migration_body(p)
            who = {
                "migration parked": tsc,
                "migration declined": run.partners[p.partner],
                "migration enforced": sco,
            }[p.scenario.name]
            await d.start("migrations", body, who)
        run.started.append(p)
        drivers.append(asyncio.create_task(guarded(p)))


async def chaos(run: Run) -> None:
    """SIGKILL the worker at the plan's moments and start a new one after a while; once,
    halfway, SIGKILL the dev server and start it again on the same database file and port."""
    procs = run.procs
    several = len(procs.workers) > 1
    for i, (gap, down) in enumerate(zip(run.plan.kill_gaps, run.plan.worker_down, strict=True)):
        await asyncio.sleep(gap)
        target = run.plan.kill_targets[i]
        procs.kill_worker(target)
        run.kills += 1
        run.kills_by_worker[target] += 1
        which = f"worker {target + 1}" if several else "worker"
        run.out(
            f"  {time.strftime('%X')} {which} SIGKILLed ({run.kills}), {len(run.started)} started"
        )
        await asyncio.sleep(down)
        if i == run.plan.restart_after_kill:
            procs.kill_server()
            run.out(f"  {time.strftime('%X')} Temporal dev server SIGKILLed")
            await asyncio.sleep(1.5)
            await procs.start_server()
            run.restarts += 1
            run.out(f"  {time.strftime('%X')} Temporal dev server restarted on the same file")
        await procs.start_worker(target)
    run.chaos_done.set()


async def notice_midway(run: Run, urls: list[str]) -> soak_two.NoticeSent:
    """Once half the processes have started (workers being killed meanwhile), the same
    deprecation notice to every API directly, at once."""
    while len(run.started) < len(run.plan.processes) // 2:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    sent = await soak_two.send_notice_to_each(urls, run.bodies[Body.TSC])
    run.out(
        f"  {time.strftime('%X')} deprecation notice sent to each API at once: "
        f"{' / '.join(sent.answers)}"
    )
    return sent


async def settled(client: Client, p: Planned, within: float) -> str:
    """Wait until the process rests: closed (its last write done), or — parked migrations —
    in Monitoring with no activity pending. Returns the execution status."""
    handle = client.get_workflow_handle(p.workflow_id)
    give_up = time.monotonic() + within
    while True:
        try:
            desc = await handle.describe()
            if desc.status is not WorkflowExecutionStatus.RUNNING:
                return desc.status.name if desc.status else "?"
            if p.scenario.expected[1] == "active" and not desc.raw_description.pending_activities:
                state = await handle.query("status")
                if state["stage"] == p.scenario.expected[0]:
                    return "RUNNING"
        except RPCError:
            pass
        if time.monotonic() > give_up:
            return "RUNNING (not settled)"
        await asyncio.sleep(1.0)


@dataclass
class Verdict:
    expected: int = 0
    wrong: list[str] = field(default_factory=list)
    projection_equal: int = 0
    projection_wrong: list[str] = field(default_factory=list)
    query_nondeterminism: list[str] = field(default_factory=list)


async def final_states(run: Run, client: Client, db: Database) -> Verdict:
    v = Verdict()
    for p in run.plan.processes:
        handle = client.get_workflow_handle(p.workflow_id)
        try:
            state = await handle.query("status")
        except (RPCError, WorkflowQueryFailedError) as exc:  # a query replays the run
            v.wrong.append(f"{p.pid} ({p.scenario.name}): no status: {str(exc)[:200]}")
            if "nondetermin" in str(exc).lower():
                v.query_nondeterminism.append(p.workflow_id)
            continue
        got = (state["stage"], state["status"])
        execution = (await handle.describe()).status
        closed_ok = execution is (
            WorkflowExecutionStatus.RUNNING
            if p.scenario.expected[1] == "active"
            else WorkflowExecutionStatus.COMPLETED
        )
        fallback_ok = p.scenario.name != "migration parked" or state["fallback"]["active"]
        if got == p.scenario.expected and closed_ok and fallback_ok:
            v.expected += 1
        else:
            v.wrong.append(
                f"{p.pid} ({p.scenario.name}): {got}, execution {execution}, "
                f"expected {p.scenario.expected}"
            )
        with db.session() as session:
            row = repo.get_process(session=session, workflow_id=p.workflow_id)
        projected = (row.stage, row.status) if row else None
        if projected == got:
            v.projection_equal += 1
        else:
            v.projection_wrong.append(f"{p.pid}: store {projected}, workflow {got}")
    return v


def nondeterminism_in_log(text: str) -> list[str]:
    return [line for line in text.splitlines() if "nondetermin" in line.lower()]


async def soak(args: argparse.Namespace, out: Callable[[str], None]) -> bool:
    began = time.monotonic()
    two = args.workers > 1 or args.apis > 1  # production's topology, and its own checks
    plan = make_plan(args.seed, args.processes, args.kills, args.restarts, args.workers)
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="kwanus-soak-"))
    procs = Processes(
        state_dir, database_url=args.database_url, out=out, workers=args.workers, apis=args.apis
    )
    if two:
        procs.stack.env["KWANUS_FANOUT_BATCH_SIZE"] = str(soak_two.FANOUT_BATCH_SIZE)
    admin = procs.prepare()
    out(
        f"soak: seed {args.seed}, {args.processes} processes, {args.kills} worker kills, "
        f"{args.restarts} server restart(s); state in {state_dir}"
    )
    if two:
        out(
            f"  {args.workers} workers, {args.apis} APIs behind one round-robin address, one "
            f"database ({'PostgreSQL' if 'postgresql' in args.database_url else 'SQLite'})"
        )
    balancer: RoundRobin | None = None
    notice_partners = soak_two.notice_partners(args.seed, args.processes) if two else []
    try:
        await procs.start_server()
        # All at once: the workers apply the stewardship schedule at the same moment.
        await asyncio.gather(*(procs.start_worker(i) for i in range(args.workers)))
        await asyncio.gather(*(procs.start_api(i) for i in range(args.apis)))
        client = await connect(procs.settings)
        db = Database(procs.settings.database_url)
        schedule_before = (await soak_two.schedule_view(client))[1] if two else ""
        if args.apis == 1:
            http = httpx.AsyncClient(base_url=procs.api_url, timeout=60)
        else:
            host = procs.settings.api_host
            balancer = RoundRobin([(host, port) for port in procs.api_ports])
            await balancer.start()
            # A connection per request (no keep-alive): the requests alternate over the APIs.
            no_keep_alive = httpx.Limits(max_keepalive_connections=0)
            http = httpx.AsyncClient(base_url=balancer.url, timeout=60, limits=no_keep_alive)
            out(f"  round-robin address {balancer.url} -> {', '.join(procs.api_urls)}")
        async with http:
            d = Driver(http, bearer(admin))
            bodies = await d.bodies()
            partners = {pid: await d.partner(partner_body(pid)) for pid in plan.partners}
            for pid in notice_partners:
                await d.partner(soak_two.notice_partner_body(pid))
            resp = await d.call(
                "PUT",
                "/v1/compatibility-matrix",
                headers=bodies[Body.TSC],
                json={"entries": MATRIX, "reason": "soak: the migrations' target"},
                ok=(200,),
            )
            assert resp.status_code == 200, resp.text
            run = Run(plan, procs, d, bodies, partners, out)
            drivers: list[asyncio.Task[None]] = []
            chaos_task = asyncio.create_task(chaos(run))
            notice_task = asyncio.create_task(notice_midway(run, procs.api_urls)) if two else None
            await starter(run, policies(), drivers)
            out(f"  {time.strftime('%X')} all {len(run.started)} started")
            await chaos_task
            await asyncio.gather(*drivers)
            out(f"  {time.strftime('%X')} every person has acted; waiting for the processes")
            rests = await asyncio.gather(*(settled(client, p, args.settle) for p in plan.processes))
            out(f"  {time.strftime('%X')} settled: {dict(Counter(rests))}")
            verdict = await final_states(run, client, db)
            runs = {p.workflow_id: await histories(client, p.workflow_id) for p in plan.processes}
            notice: soak_two.NoticeCheck | None = None
            schedule: soak_two.ScheduleCheck | None = None
            chain: tuple[str, list[str]] = ("", [])
            if notice_task is not None:
                notice = await soak_two.check_notice(
                    client, db, await notice_task, notice_partners, args.settle
                )
                out(f"  {time.strftime('%X')} the notice's fan-out and migrations checked")
                for wid in notice.workflow_ids:  # into the audit and replay checks below
                    runs[wid] = await histories(client, wid)
                schedule = await soak_two.check_schedule(
                    client, schedule_before, procs.worker_logs(), procs.worker_starts
                )
                chain = soak_two.check_chain(db)
            scheduled = {w: [k for h in hs for k in scheduled_writes(h)] for w, hs in runs.items()}
            due = {w: [k for h in hs for k in due_writes(h)] for w, hs in runs.items()}
            # Read after the histories: runs still open go on writing (an enforced migration
            # records a monitoring check every 3 s), so a row is judged on its run's history
            # read again, and a write in flight when its history was read is not yet due.
            audit = check_audit(db, scheduled, due=due)
            since = await written_since(client, audit)
            mine = notice.workflow_ids if notice else []
            notice_audit = check_audit(
                db, {w: scheduled[w] for w in mine}, due={w: due[w] for w in mine}
            )
            every = [h for hs in runs.values() for h in hs]
            nde: list[str] = []
            bugs: list[str] = []
            other: Counter[str] = Counter()
            for h in every:
                f = task_failures(h.workflow_id, h)
                nde += f.nondeterminism
                bugs += f.bugs
                other += f.other
            replayed = await replay_failures(every)
            in_log = nondeterminism_in_log(procs.worker_logs())
            replayed_ids = {h.workflow_id for h in every if h.workflow_id in replayed}
            if replayed_ids:
                keep = state_dir / "nondeterministic-histories"
                keep.mkdir(exist_ok=True)
                for h in every:
                    if h.workflow_id in replayed_ids:
                        (keep / f"{h.workflow_id}.json").write_text(h.to_json())
            db.dispose()
    finally:
        if balancer is not None:
            await balancer.stop()
        procs.stop()

    n = len(plan.processes)
    by_kind = Counter(p.scenario.name for p in plan.processes)
    affected = {*replayed, *verdict.query_nondeterminism, *(x.split(" ")[0] for x in nde)}
    nondeterminism = len(affected) or len(in_log)  # workflows hit (the log names none)
    wall = time.monotonic() - began
    rows = [
        ("seed", str(args.seed)),
        ("processes", str(n)),
        *((f"  {name}", f"{by_kind[name]} -> {SCENARIOS[name].expected}") for name in SCENARIOS),
        ("worker kills (SIGKILL)", str(run.kills)),
        ("server restarts (SIGKILL, same db file)", str(run.restarts)),
        ("in expected final state", f"{verdict.expected}/{n} ({100 * verdict.expected / n:.1f} %)"),
        ("projection == workflow status", f"{verdict.projection_equal}/{n}"),
        ("audit rows checked", str(audit.rows)),
        ("duplicate audit rows", str(audit.duplicates)),
        ("audit rows missing / unexpected", f"{len(audit.missing)} / {len(audit.unexpected)}"),
        ("  written after their run's history was read", str(len(since))),
        ("histories (runs) replayed", str(len(every))),
        ("non-determinism errors (workflows)", str(nondeterminism)),
        (
            "  live histories / replay / worker log",
            f"{len(nde)} / {len(replayed)} / {len(in_log)}",
        ),
        ("  status queries failing on it", str(len(verdict.query_nondeterminism))),
        ("workflow task failures (bugs)", str(len(bugs))),
        ("other workflow task failures", str(dict(other)) if other else "0"),
        ("driver errors", str(len(run.driver_errors))),
        ("HTTP calls retried (something was down)", str(d.retries)),
        ("worker starts", str(procs.worker_starts)),
    ]
    two_problems: list[str] = []
    if two:
        served = [procs.log_text(api_name(i)) for i in range(args.apis)]
        by_api = [soak_two.requests_served(log) for log in served]
        kills = [run.kills_by_worker[i] for i in range(args.workers)]
        starts = procs.worker_starts_by_index
        rows += [
            ("workers / APIs", f"{args.workers} / {args.apis}"),
            ("worker kills per worker", " / ".join(map(str, kills))),
            ("worker starts per worker", " / ".join(map(str, starts))),
            ("requests served per API", " / ".join(map(str, by_api))),
        ]
        if balancer is not None:
            conns = " / ".join(map(str, balancer.connections))
            rows.append(("connections via the round-robin address", conns))
            if sum(balancer.refused):
                two_problems.append(f"round-robin address: refused by API {balancer.refused}")
        if args.workers > 1 and min(kills) == 0:
            two_problems.append(f"worker kills per worker {kills}: a worker was never killed")
        if min(by_api) == 0:
            two_problems.append(f"requests served per API {by_api}: an API served none")
        assert notice is not None and schedule is not None
        rows += [
            ("stewardship schedules", schedule.figure),
            ("deprecation notice (to each API at once)", notice.figure),
            (
                "  its migrations (partners / ids / runs)",
                f"{notice.partners} / {notice.migrations} / {notice.migration_runs}",
            ),
            ("  at their plan window", f"{notice.at_rest}/{notice.partners}"),
            (
                "  their audit rows / duplicate",
                f"{notice_audit.rows} / {notice_audit.duplicates}",
            ),
            ("  projection == workflow status", f"{notice.projection_equal}/{notice.partners}"),
            ("audit hash chain (kwanus audit verify)", chain[0]),
        ]
        two_problems += [*schedule.problems, *notice.problems, *chain[1]]
    rows.append(("wall time", f"{wall:.0f} s ({timedelta(seconds=int(wall))})"))
    width = max(len(k) for k, _ in rows)
    out("\n" + "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
    problems = [
        *verdict.wrong,
        *verdict.projection_wrong,
        *(f"duplicate key {k}" for k in audit.duplicate_keys),
        *(f"duplicate event {k}" for k in audit.duplicate_events),
        *(f"scheduled twice {k}" for k in audit.scheduled_twice),
        *(f"duplicate notification {k}" for k in audit.duplicate_notifications),
        *(f"missing audit row {k}" for k in audit.missing),
        *(f"unexpected audit row {k}" for k in audit.unexpected),
        *nde,
        *(f"replay {k}: {v}" for k, v in replayed.items()),
        *in_log,
        *bugs,
        *run.driver_errors,
        *two_problems,
    ]
    ok = run.kills >= args.kills and run.restarts >= args.restarts and not problems
    ok = ok and verdict.expected == n
    for line in problems[:50]:
        out(f"  FAIL {line}")
    out(f"\nsoak {'PASSED' if ok else 'FAILED'}")
    return ok


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--processes", type=int, default=200)
    p.add_argument("--kills", type=int, default=10, help="worker SIGKILLs")
    p.add_argument("--restarts", type=int, default=1, choices=(0, 1), help="server restarts")
    p.add_argument("--state-dir", type=Path, help="default: a new temporary folder")
    p.add_argument("--database-url", default="", help="app database; default SQLite")
    p.add_argument("--settle", type=float, default=300.0, help="seconds to wait for the end")
    p.add_argument("--workers", type=int, default=1, choices=(1, 2, 3, 4), help="worker processes")
    p.add_argument(
        "--apis",
        type=int,
        default=1,
        choices=(1, 2, 3, 4),
        help="API processes, behind one round-robin address when more than one",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        ok = asyncio.run(soak(args, out))
    except Exception as exc:
        out(f"soak ERROR: {type(exc).__name__}: {exc}")
        ok = False
    # A process that used a Temporal client can crash in interpreter teardown (app/cli.py).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
