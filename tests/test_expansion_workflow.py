"""The PartnerExpansion skeleton on the time-skipping server: submission recorded once, stage
shown, reviews awaited with a reminder and a deadline (P-3)."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from kwanus.contract import expansion_workflow_id
from kwanus.models import ExpansionInput, canonical_sha256
from policy.document import DEFAULT_POLICY
from policy.proposal import Proposal
from policy.vocabulary import ExpansionStage, ProcessStatus
from store.db import Database
from store.tables import AuditEvent, Process
from tests.conftest import running_worker
from tests.factories import proposal_body
from workflows.expansion import PartnerExpansion


def _input(expansion_id: str) -> ExpansionInput:
    proposal = Proposal.model_validate(proposal_body())
    return ExpansionInput(
        expansion_id=expansion_id,
        partner_id="acme",
        proposal=proposal,
        proposal_sha256=canonical_sha256(proposal),
        policy=DEFAULT_POLICY,
        submitted_by="tok_test",
    )


async def test_submission_recorded_then_reviews_awaited_until_deadline(
    ts_env: WorkflowEnvironment, db: Database
) -> None:
    """P-3, P-4, E-12.1: the run records its submission once, enters Evaluation awaiting the
    four bodies, reminds at the policy's reminder point and expires at the review deadline."""
    async with running_worker(ts_env.client, db) as task_queue:
        handle = await ts_env.client.start_workflow(
            PartnerExpansion.run,
            _input("wf1"),
            id=expansion_workflow_id("wf1"),
            task_queue=task_queue,
        )
        await ts_env.sleep(timedelta(hours=1))
        state = await handle.query(PartnerExpansion.status)
        assert state.stage is ExpansionStage.EVALUATION
        assert state.status is ProcessStatus.ACTIVE
        assert sorted(a.actor for a in state.awaiting) == ["CGB", "ERC", "SCO", "TSC"]
        deadline = state.awaiting[0].deadline
        assert deadline is not None
        # The review window opens when Evaluation starts, just after the submission is recorded.
        opened_after = deadline - DEFAULT_POLICY.review.period - state.submitted_at
        assert timedelta(0) <= opened_after < timedelta(minutes=1)

        result = await handle.result()

    assert result.status is ProcessStatus.EXPIRED
    with db.session() as session:
        events = session.exec(
            select(AuditEvent).where(AuditEvent.workflow_id == "expansion-wf1")
        ).all()
        process = session.get(Process, "expansion-wf1")
    kinds = [e.event for e in events]
    assert kinds == ["submitted", "stage_changed", "reminder", "deadline_missed"]
    assert len({e.key for e in events}) == len(events)
    reminder = next(e for e in events if e.event == "reminder")
    assert (
        reminder.at.replace(tzinfo=None) - events[0].at.replace(tzinfo=None)
        >= DEFAULT_POLICY.review.reminder
    )
    assert process is not None and process.status == "expired"
    assert process.state is not None and process.state["status"] == "expired"
