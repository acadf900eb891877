"""What every governance workflow does the same way: write an event through the activity, show
its stage to ops (search attributes + current details), and wait on a human step with a
reminder and a deadline (P-3)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.governance import GovernanceActivities
    from kwanus import contract
    from kwanus.models import Awaiting, RecordEvent
    from policy.document import Deadline
    from policy.vocabulary import ProcessKind, ProcessStatus

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Activities retry until they succeed: a database outage must delay a year-long process,
# never fail it. Business refusals are non-retryable ApplicationErrors.
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)


class Ledger:
    """The audit/projection writer and UI presenter of one process run."""

    def __init__(
        self,
        *,
        process: ProcessKind,
        process_id: str,
        partner_id: str,
        policy_version: int,
        snapshot: Callable[[], dict[str, Any]],
    ) -> None:
        self.process = process
        self.process_id = process_id
        self.partner_id = partner_id
        self.policy_version = policy_version
        self.snapshot = snapshot
        self.workflow_id = workflow.info().workflow_id

    async def record(
        self,
        step: str,
        *,
        event: str,
        actor: str,
        stage: str,
        status: ProcessStatus,
        awaiting: list[Awaiting],
        rules: list[str] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Write one governance event. `step` is unique within the workflow, so the key
        `<workflow id>:<step>` makes a retried activity a no-op (P-4)."""
        await workflow.execute_activity_method(
            GovernanceActivities.record_event,
            RecordEvent(
                key=f"{self.workflow_id}:{step}",
                workflow_id=self.workflow_id,
                process=self.process,
                process_id=self.process_id,
                partner_id=self.partner_id,
                event=event,
                actor=actor,
                at=workflow.now(),
                stage=stage,
                status=status,
                next_deadline=next_deadline(awaiting),
                awaiting=awaiting,
                rules=rules or [],
                data=data or {},
                policy_version=self.policy_version,
                state=self.snapshot(),
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
            summary=f"{event} @ {stage}",
        )

    def show(self, *, stage: str, status: ProcessStatus, awaiting: list[Awaiting]) -> None:
        """Search attributes and current details: ops read them without decoding payloads.
        Ids and enums only — Temporal stores these unencrypted."""
        deadline = next_deadline(awaiting)
        workflow.upsert_search_attributes(
            [
                contract.PARTNER_ID.value_set(self.partner_id),
                contract.PROCESS.value_set(self.process.value),
                contract.STAGE.value_set(stage),
                contract.NEXT_DEADLINE.value_set(deadline)
                if deadline is not None
                else contract.NEXT_DEADLINE.value_unset(),
            ]
        )
        waiting = ", ".join(f"{a.actor} ({a.action})" for a in awaiting) or "nobody"
        until = f" until {deadline.isoformat(timespec='minutes')}" if deadline else ""
        workflow.set_current_details(
            f"**{self.process.value} {self.process_id}** · partner `{self.partner_id}`\n\n"
            f"Stage: **{stage}** · status: **{status.value}**\n\n"
            f"Awaiting: {waiting}{until}"
        )


def next_deadline(awaiting: list[Awaiting]) -> datetime | None:
    deadlines = [a.deadline for a in awaiting if a.deadline is not None]
    return min(deadlines) if deadlines else None


async def wait_with_deadline(
    done: Callable[[], bool],
    *,
    opened_at: datetime,
    deadline: Callable[[], datetime],
    window: Deadline,
    on_reminder: Callable[[], Any],
) -> bool:
    """Wait until `done()` or the deadline (P-3), sending one reminder at the policy's reminder
    point. `deadline` is re-read on every wake-up, so an extension made while waiting is
    honoured by the running timer. Returns whether the step was done in time."""
    reminded = False
    while not done():
        now = workflow.now()
        due = deadline()
        if now >= due:
            return False
        remind_at = opened_at + window.reminder
        wake = remind_at if not reminded and remind_at < due else due
        try:
            await workflow.wait_condition(
                lambda d=due: done() or deadline() != d,  # type: ignore[misc]
                timeout=max(wake - now, timedelta(seconds=1)),
            )
        except TimeoutError:
            if not reminded and workflow.now() >= remind_at and not done():
                reminded = True
                await on_reminder()
    return True
