"""P-8 (read your writes) against a hostile or unlucky client, ops and a running process: what
an independent review of issue 19 broke, each test failing on the reviewed code (7e285e1) and
holding since — a closing Update racing a step's last one, a step closed with no event of its
own, a start whose Temporal call outlives its wait (P-1, P-6)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy.engine import make_url
from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment

from kwanus.models.common import Act
from kwanus.models.expansion import ExpansionStatus
from kwanus.models.migration import MigrationStatus
from policy.forms import MigrationPlan, MonitoringDecision, Withdrawal
from policy.review import Review
from policy.vocabulary import Body, MigrationType, ProcessKind, ProcessStatus, Trigger
from store import repo
from store.db import Database
from store.tables import PendingAction
from testdata.factories import proposal_body
from tests.apistack import eventually, serving, unique
from tests.test_expansion_workflow import (
    Run,
    actor,
    expansions_on,
    released_and_breached,
    review_of,
)
from tests.test_migration_workflow import PARTNER, PLAN, Mig, migrations_on
from tests.test_read_your_writes import api_without_worker

# A bound no Temporal call meets: stands in for a server slower than KWANUS_WORKER_WAIT_SECONDS.
TINY = 0.000001


def sqlite_path(db: Database) -> str:
    url = make_url(db.url)
    if url.get_backend_name() != "sqlite" or not url.database:
        pytest.skip("holds the store's write lock the SQLite way")
    return url.database


CLOSING = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "completed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "failed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "terminated",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continued",
}


async def run_closes(run: Run | Mig, within: float) -> str:
    """How the run closed, or "running" after `within` s (its history, as the server has it:
    the time-skipping server's describe cannot decode its search attributes)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within
    while True:
        events = (await run.handle.fetch_history()).events
        closed = CLOSING.get(events[-1].event_type)
        if closed is not None:
            return closed
        if loop.time() > give_up:
            return "running"
        await asyncio.sleep(0.2)


async def test_a_withdrawal_racing_the_last_review_closes_the_run(
    ts_env: WorkflowEnvironment, db: Database, request: pytest.FixtureRequest
) -> None:
    """P-8 (found HIGH in review: the run stayed open forever) — a withdrawal accepted while the
    step-completing review is being recorded answers, and its run closes — it used to wait for a
    rest that never came, and the run never closed
    (workflows/steps.py, Steps.taking l.381-396 with Steps.close l.373-374; workflows/expansion.py
    run() waits all_handlers_finished, l.141).

    Reproduction: three reviews taken; the store's write lock held (the activities of the last
    review and of the withdrawal are in flight together — what a slow store, or simply a partner
    withdrawing while CGB reviews, gives); CGB's review accepted (the step is now done), then the
    partner's withdrawal accepted (its validator still sees the process active in Evaluation); the
    lock released. The withdrawal's `close()` counts its settle (`ledger.settles += 1`) *before* its
    `taking()` reads `rested`; the current step is done (four reviews), so it waits for `settles >
    rested` — a settle no code will make: the main path sees the process withdrawn and raises
    `Ended`, then waits for every handler to finish. Deadlock: the withdrawal's Update never
    completes (the API answers it 202 with Retry-After forever, 409 'being withdrawn' when sent
    again) and the run stays Running with a withdrawn projection. The same holds for a migration's
    `decline` racing its plan, implementation or documentation (workflows/migration.py `decline`).
    Checked: with `or self.closed` added to the settle wait (steps.py l.396) both race tests pass (a
    reviewer's experiment, not committed)."""
    sqlite_path(db)
    async with expansions_on(ts_env, db, request.node.name) as start:
        run: Run = await start()
        await run.at_step("reviews")
        for body in (Body.TSC, Body.SCO, Body.ERC):
            await run.send("review", actor(body.value), review_of(body))
        await run.recorded("review:ERC")

        lock = sqlite3.connect(sqlite_path(db), timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # every writer (the activities) queues behind it
        try:
            await run.handle.start_update(
                "review",
                Act[Review](actor=actor("CGB"), body=review_of(Body.CGB)),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=ExpansionStatus,
            )
            await run.handle.start_update(
                "withdraw",
                Act[Withdrawal](actor=actor("partner"), body=Withdrawal(reason="changed plans")),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=ExpansionStatus,
            )
            await asyncio.sleep(0.5)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        await run.recorded("review:CGB")
        await run.recorded("finished:withdrawn")
        with db.session() as session:
            row = repo.get_process(session=session, workflow_id=run.handle.id)
            assert row is not None and row.status == ProcessStatus.WITHDRAWN.value

        # Withdrawn and both records stored: the run has nothing left to do but end.
        status = await run_closes(run, within=10)
        stack = "" if status != "running" else await run.handle.query("__stack_trace")
        assert status == "completed", (
            f"the withdrawn run is still {status}: its withdrawal's Update waits for a settle "
            f"that never comes, and the run waits for it (all_handlers_finished):\n{stack}"
        )


async def test_a_decline_racing_the_plan_closes_the_migration(
    ts_env: WorkflowEnvironment, db: Database, request: pytest.FixtureRequest
) -> None:
    """P-8 (found HIGH in review) — the same deadlock in a migration: an optional migration's
    partner sends its plan and, while the plan is being recorded, declines (workflows/migration.py
    `decline` l.448, closing inside `Steps.taking`; `run()` waits all_handlers_finished, l.131). The
    decline is stored (the projection says declined), its Update never answers, the run stays
    Running.

    Reproduction: as the expansion's, with the plan and the decline accepted while the store's write
    lock is held."""
    sqlite_path(db)
    async with migrations_on(ts_env, db, request.node.name) as start:
        mig: Mig = await start(
            trigger=Trigger.TIER_UPGRADE,
            type_=MigrationType.TIER,
            subtype="upgrade",
            target={"tier": "premier"},
        )
        await mig.at_step("plan")
        lock = sqlite3.connect(sqlite_path(db), timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            await mig.handle.start_update(
                "plan",
                Act[MigrationPlan](actor=PARTNER, body=PLAN),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=MigrationStatus,
            )
            await mig.handle.start_update(
                "decline",
                Act[Withdrawal](actor=PARTNER, body=Withdrawal(reason="not now after all")),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=MigrationStatus,
            )
            await asyncio.sleep(0.5)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        await mig.recorded("plan")
        await mig.recorded("finished:declined")
        status = await run_closes(mig, within=10)
        assert status == "completed", f"the declined migration is still {status}"


async def test_a_continued_monitoring_breach_is_awaited_no_more_in_the_store(
    ts_env: WorkflowEnvironment, db: Database, request: pytest.FixtureRequest
) -> None:
    """P-8 (found MEDIUM in review: awaited in the store until the next check) — CGB's `continue` on
    a monitoring breach: the Update answers (at rest) while the projection, the inbox and the answer
    itself still show `monitoring_decision:1` open, awaiting CGB and SCO, until the next monitoring
    check (policy: 7 days later; past the decision's deadline, ops' overdue list shows CGB overdue
    on a step nobody may send — a second decision is refused 409).

    Where: workflows/steps.py Steps.wait clears the step after the Update (`self.clear()`,
    `self.show()`, l.238-247) and writes no event on success; workflows/watch.py
    `_decide_on_the_breach` returns 'continue' without an event (l.127); workflows/common.py
    `monitor` calls `ledger.settled()` at the loop's top (l.285) and sleeps — the last event written
    is the handler's `monitoring_decided`, snapshotted with the step still open
    (workflows/expansion.py `monitoring_decision`, l.455).

    Reproduction: released, a breaching platform report, the check puts it to CGB; CGB sends
    `continue`; right after the answer the store's projection is compared with the run."""
    async with expansions_on(ts_env, db, request.node.name) as start:
        run: Run = await start()
        await released_and_breached(run, db)
        live = await run.send(
            "monitoring_decision",
            actor("CGB"),
            MonitoringDecision(decision="continue", rationale="a blip"),
        )
        assert (live.step, live.awaiting) == (None, [])  # the run: nothing awaited
        await asyncio.sleep(1.0)  # nothing more is coming: the run sleeps until the next check
        with db.session() as session:
            row = repo.get_process(session=session, workflow_id=run.handle.id)
            assert row is not None and row.state is not None
            inbox = session.exec(
                select(PendingAction).where(PendingAction.workflow_id == run.handle.id)
            ).all()
        stored = (row.state["step"], [a["actor"] for a in row.awaiting])
        assert stored == (None, []), f"the store still shows {stored} (what every read answers)"
        assert [p.actor for p in inbox] == []


async def settle_background_calls() -> None:
    """The API's timed-out Temporal calls finish in the background (kwanus.temporal.within):
    let them, rather than have the loop's shutdown cancel them (README, Known issues)."""
    await asyncio.sleep(3)


async def test_a_start_timing_out_never_answers_another_partners_process(
    dev_env: WorkflowEnvironment, db: Database
) -> None:
    """P-6, P-1, P-8 (found MEDIUM in review) — a start whose update-with-start is not answered
    within the bound is judged against whatever holds the id — another partner's process is 409,
    not answered as the caller's own (as it was).

    Where: api/processes.py start_once, `if not ready and await started_owner(...) is None` (l.294):
    any existing run is taken for the caller's own, whoever owns it and whatever it was started with
    (the partner and content checks of the WorkflowAlreadyStartedError path are skipped), then
    `accepted()` (l.329-342) reads the projection with no `ensure_sees`. The caller gets 202,
    `Location` of the other partner's process and its stage, status, step, awaiting and deadline;
    its own proposal was never started, yet it is told it was.

    Reproduction: partner A starts `eid` through the API; partner B submits its own proposal under
    the same id through an API whose KWANUS_WORKER_WAIT_SECONDS is tiny — standing in for a Temporal
    server slower than the bound, which is what the bound is for."""
    async with serving(dev_env, db) as api:
        owner = await api.partner(unique("own"))
        other = await api.partner(unique("oth"))
        eid = unique("taken")
        first = await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=owner)
        assert first.status_code == 202 and first.json()["step"] == "reviews", first.text
        async with api_without_worker(dev_env, db, api.settings.task_queue, wait=TINY) as alone:
            slow = alone.http
            theirs = await slow.post("/v1/expansions", json=proposal_body(id=eid), headers=other)
            await settle_background_calls()
        await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("test over")
        assert theirs.status_code == 409, (
            theirs.status_code,
            theirs.headers.get("Location"),
            theirs.text,
        )


async def test_a_start_whose_call_outlives_its_wait_is_answered_with_its_id(
    dev_env: WorkflowEnvironment, db: Database
) -> None:
    """P-1, P-8 (found MEDIUM in review: "503 could not be started; send it again" while the
    start was still on its way, so an id-less client following it started a second process) —
    a start whose Temporal call outlives the API's wait is never answered "not started": it is
    202 with Retry-After and its id in `Location`, and exactly the processes answered run.

    Reproduction: an API with a tiny KWANUS_WORKER_WAIT_SECONDS (a Temporal server slower than
    the bound); three id-less submissions; then the partner's processes are counted."""
    async with serving(dev_env, db) as api:
        partner_id = unique("lost")
        acme = await api.partner(partner_id)
        located: list[str] = []
        async with api_without_worker(dev_env, db, api.settings.task_queue, wait=TINY) as alone:
            slow = alone.http
            for _ in range(3):
                resp = await slow.post("/v1/expansions", json=proposal_body(), headers=acme)
                assert resp.status_code == 202, resp.text
                assert resp.headers["Retry-After"], resp.headers
                located.append(resp.headers["Location"].rsplit("/", 1)[-1])
            await settle_background_calls()

        def started() -> list[str]:
            with db.session() as session:
                rows = repo.list_processes(
                    session=session, kind=ProcessKind.EXPANSION, partner_id=partner_id
                )
                return sorted(r.process_id for r in rows)

        async def all_three() -> bool:
            return len(started()) >= len(located)

        await eventually(all_three, within=15)
        ids = started()
        for process_id in ids:
            await api.env.client.get_workflow_handle(f"expansion-{process_id}").terminate("over")
        assert ids == sorted(located)
