"""PartnerExpansion: one proposal from submission to outcome review (Expansion Protocol §2, E-12.1).

This is the skeleton every later stage slots into: the submission is recorded, the run shows
its stage to ops, and it waits — with a reminder and a deadline (P-3) — for the four reviews
(E-2.2).
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from kwanus.contract import EXPANSION_WORKFLOW
    from kwanus.models import Awaiting, ExpansionInput, ExpansionStatus
    from policy.proposal import check_submission
    from policy.vocabulary import Body, ExpansionStage, ProcessKind, ProcessStatus
    from workflows.common import Ledger, wait_with_deadline


@workflow.defn(name=EXPANSION_WORKFLOW)
class PartnerExpansion:
    @workflow.init
    def __init__(self, inp: ExpansionInput) -> None:
        self.inp = inp
        self.policy = inp.policy  # P-5: the version in force at start, kept for the whole run
        self.ledger = Ledger(
            process=ProcessKind.EXPANSION,
            process_id=inp.expansion_id,
            partner_id=inp.partner_id,
            policy_version=inp.policy.version,
            snapshot=lambda: self.state.model_dump(mode="json"),
        )
        self.state = ExpansionStatus(
            id=inp.expansion_id,
            workflow_id=workflow.info().workflow_id,
            partner_id=inp.partner_id,
            category=inp.proposal.category,
            stage=ExpansionStage.PROPOSAL,
            status=ProcessStatus.ACTIVE,
            flags=list(check_submission(inp.proposal, inp.policy).flags),
            policy_version=inp.policy.version,
            proposal_sha256=inp.proposal_sha256,
            submitted_at=workflow.now(),
        )
        self.review_deadline: datetime | None = None

    @workflow.run
    async def run(self, inp: ExpansionInput) -> ExpansionStatus:
        self.ledger.show(stage=self.state.stage, status=self.state.status, awaiting=[])
        await self.ledger.record(
            "submitted",
            event="submitted",
            actor=f"partner:{inp.partner_id}",
            stage=self.state.stage,
            status=self.state.status,
            awaiting=[],
            rules=["E-2.1", *sorted({f.rule for f in self.state.flags})],
            data={
                "proposal_sha256": inp.proposal_sha256,
                "category": inp.proposal.category.value,
                "flags": [f.model_dump() for f in self.state.flags],
                "submitted_by": inp.submitted_by,
            },
        )

        # Evaluation: the four bodies review in parallel (E-2.2).
        opened = workflow.now()
        self.review_deadline = opened + self.policy.review.period
        await self._enter(
            ExpansionStage.EVALUATION,
            [Awaiting(actor=b.value, action="review", deadline=self.review_deadline) for b in Body],
        )
        reviewed = await wait_with_deadline(
            lambda: len(self.state.reviews) == len(Body),
            opened_at=opened,
            deadline=lambda: self._review_deadline(),
            window=self.policy.review,
            on_reminder=lambda: self._remind("reviews"),
        )
        if not reviewed:
            await self._finish(
                ProcessStatus.EXPIRED,
                event="deadline_missed",
                actor="system",
                rules=["P-3"],
                data={"step": "reviews", "missing": self._pending_actors()},
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    @workflow.query(name="status")
    def status(self) -> ExpansionStatus:
        return self.state

    # --- helpers ------------------------------------------------------------------------

    def _review_deadline(self) -> datetime:
        assert self.review_deadline is not None
        return self.review_deadline

    def _pending_actors(self) -> list[str]:
        return [a.actor for a in self.state.awaiting]

    async def _enter(self, stage: ExpansionStage, awaiting: list[Awaiting]) -> None:
        self.state.stage = stage
        self.state.awaiting = awaiting
        self.ledger.show(stage=stage, status=self.state.status, awaiting=awaiting)
        await self.ledger.record(
            f"stage:{stage.value}",
            event="stage_changed",
            actor="system",
            stage=stage,
            status=self.state.status,
            awaiting=awaiting,
            rules=["E-12.1"],
        )

    async def _remind(self, step: str) -> None:
        await self.ledger.record(
            f"reminder:{step}",
            event="reminder",
            actor="system",
            stage=self.state.stage,
            status=self.state.status,
            awaiting=self.state.awaiting,
            rules=["P-3"],
            data={"step": step, "awaiting": self._pending_actors()},
        )

    async def _finish(
        self,
        status: ProcessStatus,
        *,
        event: str,
        actor: str,
        rules: list[str],
        data: dict[str, object],
    ) -> None:
        self.state.status = status
        self.state.awaiting = []
        self.ledger.show(stage=self.state.stage, status=status, awaiting=[])
        await self.ledger.record(
            f"finished:{status.value}",
            event=event,
            actor=actor,
            stage=self.state.stage,
            status=status,
            awaiting=[],
            rules=rules,
            data=dict(data),
        )
