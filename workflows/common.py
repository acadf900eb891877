"""What every governance workflow does the same way: write an event through the activity, show
its stage to ops (search attributes + current details), and wait on a human step with a
reminder and a deadline (P-3)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.governance import GovernanceActivities
    from kwanus import contract
    from kwanus.contract import Refusal
    from kwanus.models import Actor, Awaiting, MonitoringCheck, RecordEvent, TelemetryCheckInput
    from policy.decisions import Decision
    from policy.document import Deadline, PolicyDocument
    from policy.vocabulary import ProcessKind, ProcessStatus, Role

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
        view: Callable[[], tuple[str, ProcessStatus, list[Awaiting]]],
    ) -> None:
        self.process = process
        self.process_id = process_id
        self.partner_id = partner_id
        self.policy_version = policy_version
        self.snapshot = snapshot
        self.view = view  # the run's current (stage, status, awaiting)
        self.workflow_id = workflow.info().workflow_id

    def event(
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
    ) -> RecordEvent:
        """One governance event. `step` is unique within the workflow, so the key
        `<workflow id>:<step>` makes a retried activity a no-op (P-4)."""
        return RecordEvent(
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
        )

    async def write(self, event: RecordEvent) -> None:
        await workflow.execute_activity_method(
            GovernanceActivities.record_event,
            event,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
            summary=f"{event.event} @ {event.stage}",
        )

    def now_event(
        self,
        step: str,
        event: str,
        *,
        actor: str = "system",
        rules: list[str] | None = None,
        data: dict[str, Any] | None = None,
    ) -> RecordEvent:
        """An event stamped with the run's current stage, status and who it awaits."""
        stage, status, awaiting = self.view()
        return self.event(
            step,
            event=event,
            actor=actor,
            stage=stage,
            status=status,
            awaiting=awaiting,
            rules=rules,
            data=dict(data or {}),
        )

    async def emit(
        self,
        step: str,
        event: str,
        *,
        actor: str = "system",
        rules: list[str] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        await self.write(self.now_event(step, event, actor=actor, rules=rules, data=data))

    def show(self, *, stage: str, status: ProcessStatus, awaiting: list[Awaiting]) -> None:
        """Search attributes and current details: ops read them without decoding payloads.
        Ids and enums only — Temporal stores these unencrypted."""
        deadline = next_deadline(awaiting)
        workflow.upsert_search_attributes(
            [
                contract.PARTNER_ID.value_set(self.partner_id)
                if self.partner_id
                else contract.PARTNER_ID.value_unset(),
                contract.PROCESS.value_set(self.process.value),
                contract.STAGE.value_set(stage),
                contract.NEXT_DEADLINE.value_set(deadline)
                if deadline is not None
                else contract.NEXT_DEADLINE.value_unset(),
            ]
        )
        waiting = ", ".join(f"{a.actor} ({a.action})" for a in awaiting) or "nobody"
        until = f" until {deadline.isoformat(timespec='minutes')}" if deadline else ""
        whose = f"partner `{self.partner_id}`" if self.partner_id else "every affected partner"
        workflow.set_current_details(
            f"**{self.process.value} {self.process_id}** · {whose}\n\n"
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


T = TypeVar("T")

# Runs that opened a step before the code below existed replay without it.
STEP_OPENS_PATCH = "step-wait-starts-with-its-record"


async def record_and_wait(
    record: Callable[[], Awaitable[object]],
    open_step: Callable[[], None],
    wait: Callable[[], Awaitable[T]],
    *,
    show: Callable[[], None] | None = None,
) -> T:
    """Write a step's opening record, open the step once it is on record, and wait on it.

    The wait (and its deadline timer) starts together with the record, so the record's
    completion makes no command: `open_step` only changes state. That keeps the run replayable
    when an Update for the step reaches the worker in the same workflow task as that completion:
    a query answered by a freshly started worker can make the SDK apply the completion first
    and the Update after it, while a replay applies the Update first (temporalio 1.35; README,
    Known issues). With no command in between, both orders give the same history.

    Runs that opened their steps before this existed replay the old order: the record, then
    `open_step` and `show` (which upserted search attributes), then the wait."""
    if not workflow.patched(STEP_OPENS_PATCH):
        await record()
        open_step()
        if show is not None:
            show()
        return await wait()

    async def record_then_open() -> None:
        await record()
        open_step()

    recorded = asyncio.create_task(record_then_open())
    result = await wait()
    await recorded  # the step's record lands before the step closes (audit order)
    return result


# Runs that reached a continue-as-new point before the code below existed replay without it.
CONTINUE_AS_NEW_PATCH = "continue-as-new-at-monitoring"


async def continue_as_new_if_suggested(next_input: Callable[[], Any]) -> None:
    """Bounded histories: a loop that lives for months (monitoring) hands over to a new run of
    the same workflow id when the server suggests it — after every Update and signal handler
    has finished, with the whole state in the next run's input. Ids, search attributes, the
    audit keys (`<workflow id>:<step>`) and the API's handles (by workflow id, never run id) go
    on unchanged."""
    if not workflow.info().is_continue_as_new_suggested():
        return
    if not workflow.patched(CONTINUE_AS_NEW_PATCH):
        return
    await workflow.wait_condition(workflow.all_handlers_finished)
    workflow.continue_as_new(next_input())


def refuse(
    kind: str, detail: str, *, rule: str | None = None, errors: dict[str, str] | None = None
) -> NoReturn:
    """Refuse a human step (P-2). Raised in a validator it leaves no event in the history."""
    raise ApplicationError(
        detail, {"rule": rule, "errors": errors or {}}, type=kind, non_retryable=True
    )


def refuse_decision(decision: Decision, detail: str, kind: str = Refusal.INVALID) -> None:
    """Refuse with every finding of a policy decision, if it has any."""
    if not decision.allowed:
        refuse(kind, detail, rule=", ".join(decision.rules), errors=decision.errors())


def require_role(actor: Actor, *roles: Role) -> None:
    """P-6, checked again inside the workflow: a step sent straight to Temporal by the wrong
    role is refused like one sent through the API."""
    if actor.role not in roles:
        names = ", ".join(r.value for r in roles)
        refuse(Refusal.FORBIDDEN, f"{actor.role.value} may not do this (only {names})", rule="P-6")


def require_partner(actor: Actor, partner_id: str) -> None:
    if actor.role is not Role.PARTNER or actor.partner_id != partner_id:
        refuse(Refusal.FORBIDDEN, "only the partner of this process may do this", rule="P-6")


async def check_telemetry(
    ledger: Ledger,
    checks: list[MonitoringCheck],
    *,
    since: datetime,
    until: datetime,
    policy: PolicyDocument,
    rules: list[str],
) -> MonitoringCheck:
    """Judge the partner's telemetry for (since, until], keep the check and record it."""
    check = await workflow.execute_activity_method(
        GovernanceActivities.check_telemetry,
        TelemetryCheckInput(partner_id=ledger.partner_id, since=since, until=until, policy=policy),
        start_to_close_timeout=ACTIVITY_TIMEOUT,
        retry_policy=ACTIVITY_RETRY,
        summary="check telemetry",
    )
    checks.append(check)
    await ledger.emit(
        f"monitoring:{len(checks)}",
        "monitoring_check",
        rules=rules,
        data={"healthy": check.healthy, "findings": [f.message for f in check.findings]},
    )
    return check
