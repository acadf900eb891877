"""PartnerMigration: one migration from notice to completion (Migration Playbook §4).

Skeleton for the expansion process to start (issue 5 builds the rest): the notice — partner
notified, window defined, fallback activated before anything else (M-4.1) — then the wait for
the partner's plan within the trigger class's window (M-2.x), expiring at its end (P-3).
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from kwanus.contract import MIGRATION_WORKFLOW
    from kwanus.models import Awaiting, Fallback, MigrationInput, MigrationStatus
    from policy.migration import (
        NOTICE_ACTIONS,
        fallback_until,
        migration_window,
        trigger_class,
    )
    from policy.vocabulary import MigrationStage, ProcessKind, ProcessStatus
    from workflows.common import Ledger, wait_with_deadline


@workflow.defn(name=MIGRATION_WORKFLOW)
class PartnerMigration:
    @workflow.init
    def __init__(self, inp: MigrationInput) -> None:
        self.inp = inp
        self.policy = inp.policy  # P-5
        self.ledger = Ledger(
            process=ProcessKind.MIGRATION,
            process_id=inp.migration_id,
            partner_id=inp.partner_id,
            policy_version=inp.policy.version,
            snapshot=lambda: self.state.model_dump(mode="json"),
        )
        self.state = MigrationStatus(
            id=inp.migration_id,
            workflow_id=workflow.info().workflow_id,
            partner_id=inp.partner_id,
            trigger=inp.trigger,
            trigger_class=trigger_class(inp.trigger),
            type_=inp.type_,
            subtype=inp.subtype,
            target=inp.target,
            stage=MigrationStage.NOTICE,
            status=ProcessStatus.ACTIVE,
            origin=inp.origin,
            policy_version=inp.policy.version,
            started_at=workflow.now(),
        )
        self.plan_deadline: datetime | None = None

    @workflow.run
    async def run(self, inp: MigrationInput) -> MigrationStatus:
        # M-4.1: notify, define the window, activate the fallback — before anything else.
        now = workflow.now()
        window_end = now + migration_window(inp.trigger, self.policy)
        self.state.fallback = Fallback(active=True, until=fallback_until(now, inp.fallback_months))
        self.ledger.show(stage=self.state.stage, status=self.state.status, awaiting=[])
        await self.ledger.record(
            "notice",
            event="notice",
            actor=inp.requested_by,
            stage=self.state.stage,
            status=self.state.status,
            awaiting=[],
            rules=["M-4.1", "M-6.1", "M-6.2"],
            data={
                "actions": list(NOTICE_ACTIONS),
                "window_end": window_end.isoformat(),
                "fallback_until": self.state.fallback.until.isoformat()
                if self.state.fallback.until
                else None,
                "origin": inp.origin,
            },
        )
        self.state.stage = MigrationStage.PLAN
        self.plan_deadline = window_end
        self.state.awaiting = [
            Awaiting(
                actor=f"partner:{inp.partner_id}",
                action="submit the migration plan",
                deadline=window_end,
            )
        ]
        self.ledger.show(
            stage=self.state.stage, status=self.state.status, awaiting=self.state.awaiting
        )
        await self.ledger.record(
            "stage:Plan",
            event="stage_changed",
            actor="system",
            stage=self.state.stage,
            status=self.state.status,
            awaiting=self.state.awaiting,
            rules=["M-4.2"],
        )
        planned = await wait_with_deadline(
            lambda: False,
            opened_at=now,
            deadline=lambda: window_end,
            window=self.policy.partner_step,
            on_reminder=lambda: self._record_reminder(),
        )
        if not planned:
            self.state.status = ProcessStatus.EXPIRED
            self.state.awaiting = []
            self.state.closed_at = workflow.now()
            self.ledger.show(stage=self.state.stage, status=self.state.status, awaiting=[])
            await self.ledger.record(
                "finished:expired",
                event="deadline_missed",
                actor="system",
                stage=self.state.stage,
                status=self.state.status,
                awaiting=[],
                rules=["P-3", "M-4.2"],
            )
        return self.state

    @workflow.query(name="status")
    def status(self) -> MigrationStatus:
        return self.state

    async def _record_reminder(self) -> None:
        await self.ledger.record(
            "reminder:plan",
            event="reminder",
            actor="system",
            stage=self.state.stage,
            status=self.state.status,
            awaiting=self.state.awaiting,
            rules=["P-3"],
        )
