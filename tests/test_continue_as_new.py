"""Bounded histories (issue 8): a monitoring period lasts months, so its loop continues as a new
run when the server suggests it. Here a dev server suggests it after only a few dozen events
(`limit.historyCount.suggestContinueAsNew`), and processes cross that boundary several times:
every check, review, vote and step is still there, Updates sent by workflow id keep reaching
the live run, each audit event is written once, and the histories stay short."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from kwanus.contract import Refusal
from kwanus.models.deprecation import DeprecationInput
from kwanus.models.expansion import ExpansionStatus
from policy.deprecation import DeprecationNotice
from policy.document import DEFAULT_POLICY
from policy.forms import OutcomeReview
from policy.vocabulary import ExpansionStage, MigrationStage, ProcessStatus, Role
from store import repo
from store.db import Database
from store.schemas import PartnerCreate
from store.tables import AuditEvent, Process
from testdata.factories import partner_body
from tests.conftest import (
    EXPORT_HISTORIES,
    end_runs,
    export_history,
    running_worker,
    start_dev_server,
)
from tests.test_expansion_workflow import Run, actor, approve_all, expansions_on
from tests.test_migration_workflow import PLAN, Mig, migrations_on
from workflows.deprecation import DeprecationFanOut

SUGGEST_AFTER = 40  # events; the server's default is 4 Ki (and 4 MiB)
# Monitoring in seconds, so a run crosses the boundary several times within a test.
MONITORING = {"expansion_period": timedelta(seconds=10), "check_interval": timedelta(seconds=1)}
POLICY = DEFAULT_POLICY.model_copy(
    update={"monitoring": DEFAULT_POLICY.monitoring.model_copy(update=MONITORING)}
)


@pytest.fixture(scope="module")
async def low_limit_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server(f"limit.historyCount.suggestContinueAsNew={SUGGEST_AFTER}")
    yield env
    await env.shutdown()


async def runs_of(env: WorkflowEnvironment, workflow_id: str) -> list[WorkflowHandle[Any, Any]]:
    """Every run of one workflow id, oldest first."""
    runs = [
        (wf.start_time, wf.run_id)
        async for wf in env.client.list_workflows(f"WorkflowId = '{workflow_id}'")
    ]
    return [env.client.get_workflow_handle(workflow_id, run_id=r) for _, r in sorted(runs)]


FORCED = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND


async def check_runs(env: WorkflowEnvironment, workflow_id: str, test: str) -> int:
    """Every run but the last continued as new, and those in between stay near the limit (the
    first holds the process up to monitoring, the last the review). The runs that continued
    as new are exported for the replay corpus."""
    handles = await runs_of(env, workflow_id)
    for n, handle in enumerate(handles, 1):
        history = await handle.fetch_history()
        if n < len(handles):
            assert history.events[-1].event_type == (
                EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            ), f"run {n} did not continue as new"
        if 1 < n < len(handles):  # a monitoring-only run: one check past the suggestion at most
            assert len(history.events) <= SUGGEST_AFTER + 30, (n, len(history.events))
        failed = [
            e
            for e in history.events
            if e.workflow_task_failed_event_attributes.cause
            # The test's own `terminate` fails the last run's task in flight, if any.
            and not (n == len(handles) and e.workflow_task_failed_event_attributes.cause == FORCED)
        ]
        assert failed == [], f"run {n}: workflow task failures {failed}"
        if EXPORT_HISTORIES and n < len(handles):  # the last: by `end_runs`, as in every test
            export_history(f"{test}__{workflow_id}.run{n}", history)
    return len(handles)


def audit_keys(db: Database, workflow_id: str) -> list[str]:
    with db.session() as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.workflow_id == workflow_id)).all()
    return [r.key for r in rows]


async def test_expansion_crosses_the_boundary_with_state_and_updates_intact(
    low_limit_env: WorkflowEnvironment, db: Database, request: pytest.FixtureRequest
) -> None:
    """The monitoring loop continues as new several times; reviews, votes, plans and every
    check carry over; an outcome review sent by workflow id throughout is refused as early
    (never lost to a closed run) and accepted by the live run once the review opens."""
    async with expansions_on(low_limit_env, db, request.node.name, POLICY) as start:
        run: Run = await start()
        await approve_all(run)
        await run.partner_steps_to_release()
        before: ExpansionStatus = await run.until(
            lambda s: s.stage is ExpansionStage.MONITORING, "monitoring"
        )

        cgb, review = actor(Role.CGB), OutcomeReview(outcome="successful")
        refusals: list[str] = []

        async def keep_sending() -> ExpansionStatus:
            """CGB's outcome review, sent every 0.2 s through monitoring, as a client would."""
            while True:
                try:
                    return await run.send("outcome_review", cgb, review)
                except WorkflowUpdateFailedError as exc:
                    assert isinstance(exc.cause, ApplicationError), exc.cause
                    refusals.append(exc.cause.type or "")
                await asyncio.sleep(0.2)

        reviewed = await asyncio.wait_for(keep_sending(), timeout=60)
        result = await run.handle.result()

        runs = await check_runs(low_limit_env, run.handle.id, request.node.name)
        assert runs >= 3, f"only {runs} runs: the boundary was not crossed"
        assert refusals and set(refusals) == {Refusal.WRONG_STAGE}
        assert reviewed.outcome_review is not None
        assert result.status is ProcessStatus.COMPLETED
        assert result.outcome_review == reviewed.outcome_review
        for kept in ("reviews", "votes", "decision", "risk", "release", "submitted_at"):
            assert getattr(result, kept) == getattr(before, kept), kept
        # The checks cover the whole period across the runs, one per interval, none twice.
        assert result.monitoring_until == before.monitoring_until
        ats = [before.monitoring_until - MONITORING["expansion_period"]]
        ats += [c.at for c in result.monitoring]
        gaps = [b - a for a, b in itertools.pairwise(ats)]
        assert all(timedelta(0) < gap < timedelta(seconds=3) for gap in gaps), gaps
        assert ats[-1] >= before.monitoring_until

        keys = audit_keys(db, run.handle.id)
        assert len(keys) == len(set(keys))
        checks = {k for k in keys if ":monitoring:" in k}
        assert checks == {f"{run.handle.id}:monitoring:{n}" for n in range(1, len(ats))}
        with db.session() as session:
            row = session.exec(select(Process).where(Process.workflow_id == run.handle.id)).one()
        assert row.status == ProcessStatus.COMPLETED.value


async def test_migration_crosses_the_boundary_with_its_fallback_intact(
    low_limit_env: WorkflowEnvironment, db: Database, request: pytest.FixtureRequest
) -> None:
    """M-6.2 across runs: the fallback and its end date, the plan and the rollout carry over,
    ops still find the process by its search attributes, and a step sent to the live run is
    judged by it (a plan, long past its step, refused as in one run)."""
    async with migrations_on(low_limit_env, db, request.node.name, POLICY) as migrate:
        mig: Mig = await migrate()
        before = await mig.through_rollout()
        runs: list[WorkflowHandle[Any, Any]] = []
        for _ in range(150):  # 1 s checks: ~3 runs take well under 15 s
            runs = await runs_of(low_limit_env, mig.handle.id)
            if len(runs) >= 3:
                break
            await asyncio.sleep(0.1)
        assert len(runs) >= 3, "the monitoring loop did not continue as new"
        state = await mig.state()
        assert state.stage is MigrationStage.MONITORING and state.status is ProcessStatus.ACTIVE
        assert state.fallback == before.fallback and state.fallback.active
        for kept in ("plan", "implementation", "documentation", "rollout", "window_end"):
            assert getattr(state, kept) == getattr(before, kept), kept
        assert len(state.monitoring) >= 2

        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await mig.send("plan", PLAN)
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type == Refusal.WRONG_STAGE

        query = f"WorkflowId = '{mig.handle.id}' AND KwanusStage = 'Monitoring'"
        found = [wf async for wf in low_limit_env.client.list_workflows(query)]
        assert any(wf.status is WorkflowExecutionStatus.RUNNING for wf in found)

        await mig.handle.terminate("test over")
        await check_runs(low_limit_env, mig.handle.id, request.node.name)
        keys = audit_keys(db, mig.handle.id)
        assert len(keys) == len(set(keys))


async def test_deprecation_fan_out_crosses_the_boundary_starting_each_migration_once(
    low_limit_env: WorkflowEnvironment, db: Database, request: pytest.FixtureRequest
) -> None:
    """M-2.1 across runs: a fan-out paged two partners at a time continues as new mid-way and
    carries its cursor and counts — every affected partner gets one migration, none twice."""
    version = f"7.{uuid.uuid4().int % 10**6}"  # ids unique on this module's server
    partners = [f"d{i:02d}" for i in range(20)]
    with db.session() as session:
        for pid in partners:
            repo.create_partner(
                session=session,
                partner=PartnerCreate.model_validate(partner_body(pid, api_version=version)),
            )
    notice_id = f"api-kwanus-{version.replace('.', '_')}"
    workflow_id = f"deprecation-{notice_id}"
    async with running_worker(low_limit_env.client, db) as task_queue:
        handle = await low_limit_env.client.start_workflow(
            DeprecationFanOut.run,
            DeprecationInput(
                notice_id=notice_id,
                notice=DeprecationNotice(kind="api", version=version, replacement="8.0"),
                policy=DEFAULT_POLICY,
                requested_by="TSC",
                batch_size=2,
            ),
            id=workflow_id,
            task_queue=task_queue,
        )
        try:
            result = await asyncio.wait_for(handle.result(), timeout=60)
            assert result.progress.affected == result.progress.started == len(partners)
            assert result.progress.batches == len(partners) // 2 + 1  # the last page is empty
            assert await check_runs(low_limit_env, workflow_id, request.node.name) >= 2

            def started() -> list[str]:  # each migration's notice, recorded by its own run
                with db.session() as session:
                    ids = session.exec(
                        select(Process.workflow_id).where(
                            col(Process.workflow_id).startswith(f"migration-{notice_id}.")
                        )
                    ).all()
                return sorted(ids)

            for _ in range(300):
                if len(started()) >= len(partners):
                    break
                await asyncio.sleep(0.1)
            assert started() == [f"migration-{notice_id}.{p}" for p in partners]
            keys = audit_keys(db, workflow_id)
            pages = [f"{workflow_id}:page:{n}" for n in range(1, result.progress.batches)]
            # P-8: each full page's progress on record once, across the runs, for reads
            assert sorted(keys) == sorted(
                [f"{workflow_id}:finished:completed", f"{workflow_id}:noticed", *pages]
            )
        finally:
            await end_runs(
                low_limit_env.client,
                [f"migration-{notice_id}.{p}" for p in partners],
                request.node.name,
                export=False,
            )
            await end_runs(low_limit_env.client, [workflow_id], request.node.name)
