"""StewardshipReview on the time-skipping server: sign-offs due within the policy's window
(M-10.1); missed ones are escalated to CGB (P-3) and, still missing after the escalation window,
close the review with the missing bodies named."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from kwanus.models.common import Act, Actor
from kwanus.models.stewardship import StewardshipInput, StewardshipStatus
from policy.document import DEFAULT_POLICY
from policy.forms import StewardshipSignoff
from policy.vocabulary import ProcessStatus, Role
from store.db import Database
from store.tables import AuditEvent, StewardshipReport
from tests.conftest import end_runs, running_worker
from tests.histcheck import commands_on_step_opening
from workflows.stewardship import StewardshipReview

DAY = timedelta(days=1)


async def recorded(db: Database, key: str) -> None:
    for _ in range(200):
        with db.session() as session:
            if session.exec(select(AuditEvent).where(AuditEvent.key == key)).first():
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never recorded: {key}")


async def test_missed_signoffs_escalate_then_expire(
    ts_env: WorkflowEnvironment, db: Database, request: pytest.FixtureRequest
) -> None:
    async with running_worker(ts_env.client, db) as task_queue:
        handle = await ts_env.client.start_workflow(
            StewardshipReview.run,
            StewardshipInput(report_id="2026", policy=DEFAULT_POLICY, requested_by="ops"),
            id="stewardship-2026",
            task_queue=task_queue,
        )
        await recorded(db, "stewardship-2026:compiled")
        for _ in range(200):  # the step opens once the run has seen its window recorded
            if (await handle.query(StewardshipReview.status)).step == "signoffs":
                break
            await asyncio.sleep(0.05)
        with db.session() as session:
            assert session.get(StewardshipReport, "2026") is not None  # stored once
        # P-2: the sign-offs open, once the report is on record, without a command of their own.
        assert commands_on_step_opening(await handle.fetch_history(), ':compiled"') == []
        for role in (Role.TSC, Role.SCO):
            await handle.execute_update(
                "signoff",
                Act[StewardshipSignoff](
                    actor=Actor(role=role, token_id=f"tok_{role.value}"),
                    body=StewardshipSignoff(notes="reviewed"),
                ),
                result_type=StewardshipStatus,
            )
        await recorded(db, "stewardship-2026:signoff:SCO")
        await ts_env.sleep(DEFAULT_POLICY.signoff.period + DAY)
        state = await handle.query(StewardshipReview.status)
        assert state.escalated and state.status is ProcessStatus.ACTIVE
        assert {a.actor for a in state.awaiting} == {"ERC", "CGB"}
        await recorded(db, "stewardship-2026:escalated")
        await ts_env.sleep(DEFAULT_POLICY.escalation.period + DAY)
        for _ in range(200):
            state = await handle.query(StewardshipReview.status)
            if state.status is not ProcessStatus.ACTIVE:
                break
            await asyncio.sleep(0.05)
        assert state.status is ProcessStatus.EXPIRED
        result = await handle.result()
        assert result.closed_at is not None and set(result.signoffs) == {"TSC", "SCO"}
        with db.session() as session:
            last = session.exec(
                select(AuditEvent).where(AuditEvent.key == "stewardship-2026:finished:expired")
            ).one()
        assert last.data["missing"] == ["ERC", "CGB"] and "M-10.1" in last.rules
        await end_runs(ts_env.client, [handle.id], request.node.name)
