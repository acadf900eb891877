"""What every governance workflow does the same way: write an event through the activity, show
its stage to ops (search attributes + current details), refuse a step (P-2, P-6), check
telemetry and continue as new. Human steps wait through `workflows.steps`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn, Protocol, TypedDict, TypeVar, overload

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from typing_extensions import Unpack

with workflow.unsafe.imports_passed_through():
    from activities.governance import GovernanceActivities
    from kwanus import contract
    from kwanus.contract import Refusal
    from kwanus.models.common import (
        Actor,
        Awaiting,
        MonitoringCheck,
        RecordEvent,
        TelemetryCheckInput,
    )
    from policy.decisions import Decision
    from policy.document import PolicyDocument
    from policy.steps import is_the_partner, may_take
    from policy.vocabulary import ProcessKind, ProcessStatus, Role

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Activities retry until they succeed: a database outage must delay a year-long process,
# never fail it. Business refusals are non-retryable ApplicationErrors.
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)


A = TypeVar("A")
R = TypeVar("R")


@overload
async def call(activity: Callable[[Any, A], Awaitable[R]], arg: A, *, summary: str) -> R: ...
@overload
async def call(activity: Callable[[Any, A], R], arg: A, *, summary: str) -> R: ...
async def call(activity: Callable[[Any, A], Any], arg: A, *, summary: str) -> Any:
    """One activity, with the timeout and the retries every governance activity has."""
    return await workflow.execute_activity_method(
        activity,
        arg,
        start_to_close_timeout=ACTIVITY_TIMEOUT,
        retry_policy=ACTIVITY_RETRY,
        summary=summary,
    )


class Tracked(Protocol):
    """A process's status model, as its ledger records and shows it."""

    @property
    def id(self) -> str: ...
    @property
    def partner_id(self) -> str: ...
    @property
    def stage(self) -> str: ...
    @property
    def status(self) -> ProcessStatus: ...
    @property
    def awaiting(self) -> list[Awaiting]: ...
    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


class Fields(TypedDict, total=False):
    """What an event says beyond its step and name."""

    actor: str
    rules: list[str] | None
    data: dict[str, Any] | None


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
        self.seq = 0  # events made by this run, in order (RecordEvent.seq)
        # While a step's opening record is written: the status the record leaves shows the step
        # open — it is, once that record is stored — so a read of the projection after the
        # opening answers with the step a caller may send (P-8).
        self.opening: dict[str, Any] = {}
        # Times the run came to rest — a step opened, a stepless wait began (monitoring, a
        # remediation awaited) or the process closed: what a step's Update waits for (P-8).
        self.settles = 0
        self.recorded: dict[str, Any] | None = None  # the state the run's last event carries

    @classmethod
    def of(cls, process: ProcessKind, state: Callable[[], Tracked], *, policy: int) -> Ledger:
        """The ledger of a process whose status model says its id, partner, stage and who it
        awaits (`state` is read at each event: the run's model as it is then)."""
        return cls(
            process=process,
            process_id=state().id,
            partner_id=state().partner_id,
            policy_version=policy,
            snapshot=lambda: state().model_dump(mode="json"),
            view=lambda: (state().stage, state().status, state().awaiting),
        )

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
        self.seq += 1
        state = self.snapshot()
        if self.opening and status is ProcessStatus.ACTIVE:
            state = {**state, **self.opening}
        self.recorded = state
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
            state=state,
            seq=self.seq,
        )

    async def write(self, event: RecordEvent) -> None:
        # Not logged on replay (the SDK's logger): a line per event as it happens, with the run.
        workflow.logger.info("%s at %s (%s)", event.event, event.stage, event.status.value)
        await call(
            GovernanceActivities.record_event,
            event,
            summary=f"{event.event} @ {event.stage}",
        )

    def now_event(self, step: str, event: str, **fields: Unpack[Fields]) -> RecordEvent:
        """An event stamped with the run's current stage, status and who it awaits."""
        stage, status, awaiting = self.view()
        return self.event(
            step,
            event=event,
            actor=fields.get("actor", "system"),
            stage=stage,
            status=status,
            awaiting=awaiting,
            rules=fields.get("rules"),
            data=dict(fields.get("data") or {}),
        )

    async def emit(self, step: str, event: str, **fields: Unpack[Fields]) -> None:
        await self.write(self.now_event(step, event, **fields))

    def settled(self) -> None:
        """The run has come to rest: what it awaits now is on record (P-8)."""
        self.settles += 1

    async def rest(self) -> None:
        """The run comes to rest on a wait that is no step (its monitoring timer, a remediation
        it awaits): its status goes on record first when it changed since its last event — a
        step closed without one (CGB's `continue` on a breach) — so the store, which every read
        answers from, does not show it awaiting what it no longer awaits (P-8)."""
        if workflow.patched(REST_PATCH) and self.snapshot() != self.recorded:
            await self.emit(f"rest:{self.seq + 1}", "status_recorded", rules=["P-8"])
        self.settled()

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


# Runs that came to rest on a stepless wait before its status went on record there replay so.
REST_PATCH = "status-on-record-at-rest"

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


def refuse_decision(
    decision: Decision, detail: str | None = None, kind: str = Refusal.INVALID
) -> None:
    """Refuse with every finding of a policy decision, if it has any (the detail: what it
    says, unless given)."""
    if not decision.allowed:
        said = detail or "; ".join(f.message for f in decision.findings)
        refuse(kind, said, rule=", ".join(decision.rules), errors=decision.errors())


def require_role(actor: Actor, *roles: Role) -> None:
    refuse_decision(may_take(actor.role, roles), kind=Refusal.FORBIDDEN)


def require_partner(actor: Actor, partner_id: str) -> None:
    refuse_decision(
        is_the_partner(actor.role, actor.partner_id, partner_id), kind=Refusal.FORBIDDEN
    )


async def monitor(
    ledger: Ledger,
    checks: list[MonitoringCheck],
    *,
    since: datetime,
    going: Callable[[datetime], bool],
    pause: Callable[[], timedelta],
    resume: Callable[[], Any],
    policy: PolicyDocument,
    rules: list[str],
    moved_off: Sequence[str] = (),
    moves_to: Mapping[str, str] | None = None,
) -> None:
    """Check the partner's telemetry on durable timers while `going(last check's end)`, each
    check covering (last, now] — not a cron poll. A months-long watch continues as a new run
    when the server suggests it, the checks so far carried in `resume()`'s state. A
    migration's checks also find calls to what it `moved_off` — or, forced to a target without
    a validated manifest, to what the registered manifest `moves_to` it leaves."""
    last = since
    while going(last):
        await ledger.rest()  # on its timer: a step's Update that led here answers (P-8)
        if checks:
            await continue_as_new_if_suggested(resume)
        wait = pause()
        if wait > timedelta(0):
            await workflow.sleep(wait)
        check = await check_telemetry(
            ledger,
            checks,
            since=last,
            until=workflow.now(),
            policy=policy,
            rules=rules,
            moved_off=moved_off,
            moves_to=moves_to,
        )
        # The end of what the check covered, as its recorded result says (`at` is its `until`),
        # not the clock read again: a replay sees the time the run saw. A run whose timer fired
        # while no worker held it, woken by a query to a fresh worker, reads the previous
        # workflow task's time live (temporalio 1.35) and the next task's time on replay.
        last = check.at


async def check_telemetry(
    ledger: Ledger,
    checks: list[MonitoringCheck],
    *,
    since: datetime,
    until: datetime,
    policy: PolicyDocument,
    rules: list[str],
    moved_off: Sequence[str] = (),
    moves_to: Mapping[str, str] | None = None,
) -> MonitoringCheck:
    """Judge the partner's telemetry for (since, until], keep the check and record it."""
    check = await call(
        GovernanceActivities.check_telemetry,
        TelemetryCheckInput(
            partner_id=ledger.partner_id,
            since=since,
            until=until,
            policy=policy,
            moved_off=list(moved_off),
            moves_to=dict(moves_to or {}),
        ),
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
