"""The human-step engine every governance process waits through (P-3).

A step opens with its record and its deadline timer, is reminded once at the policy's point,
may be escalated to CGB when missed, has its deadline moved by CGB, is recorded as missed, and
the process closes — one implementation for the expansion, the migration, the remediation and
the stewardship review. What differs between them is data (`Step`), never a second copy.

The commands each process sends are those it sent before the engine existed: running processes
replay unchanged (tests/histories). Where two processes showed a step differently (the expansion
shows its end at once, the migration with its next stage) the engine keeps both (`show_ends`,
`show_opened`): search-attribute upserts are commands, checked on replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from functools import partial
from typing import Any, Protocol, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from kwanus.contract import Refusal
    from kwanus.models.common import Act, Awaiting, StepRecord
    from policy.document import Deadline, PolicyDocument
    from policy.forms import DeadlineExtension
    from policy.steps import check_extension
    from policy.vocabulary import Body, ProcessKind, ProcessStatus, Role
    from workflows.common import (
        Ledger,
        Tracked,
        refuse,
        refuse_decision,
        require_partner,
        require_role,
    )

T = TypeVar("T")


class Ended(Exception):
    """The run ended early (rejected, withdrawn, declined, expired); its closing event is
    recorded."""


class StepState(Tracked, Protocol):
    """What the engine reads and writes of a process's status model."""

    status: ProcessStatus
    step: str | None
    awaiting: list[Awaiting]
    closed_at: datetime | None


class Escalate(Enum):
    """What a missed step does (P-3), as the process's rules say."""

    EXTEND = "extend"  # CGB may move the deadline within the escalation window, or let it lapse
    CHASE = "chase"  # the bodies get the escalation window more, CGB chasing the missing ones


@dataclass(frozen=True)
class Step:
    """One human step as its process defines it."""

    name: str
    window: Deadline  # the policy's period and reminder point
    actors: Callable[[], list[Awaiting]]  # who is awaited (their deadline, or the step's)
    done: Callable[[], bool]
    rules: Sequence[str] = ("P-3",)  # on its window, reminder, escalation and miss
    due: datetime | None = None  # a deadline of its own (a migration's window end)
    opened: datetime | None = None  # when its window counts from (a remediation: the violation)
    escalation: Escalate | None = None
    on_escalate: Callable[[datetime], None] | None = None  # the process records it (new deadline)
    opening: Callable[[], Awaitable[object]] | None = None  # its own record, not `window_opened`
    on_open: Callable[[], None] | None = None  # what "open" means, when not `state.step = name`
    shows: str | None = None  # the status's `step` once open, when not its name (on_open's)
    miss_recorded: bool = True  # `deadline_missed`; a process whose close says it has none
    only: bool = False  # the run's one step: records keyed `reminder`, `escalated`... alone

    def key(self, record: str, escalations: int) -> str:
        """A record's audit key (P-4): `<record>:<step>:<escalations>`; the records of a run's
        only step keep the keys they have always had."""
        if not self.only:
            return f"{record}:{self.name}:{escalations}"
        return record if not escalations or record == "escalated" else f"{record}:escalated"


class Steps:
    """The human steps of one run: which step is awaited, from whom, until when."""

    def __init__(
        self,
        process: ProcessKind,
        state: Callable[[], StepState],
        policy: PolicyDocument,
        *,
        what: str,
        show_ends: bool,
        show_opened: bool,
    ) -> None:
        self.ledger = Ledger.of(process, state, policy=policy.version)
        self.state = state()
        self.what = what  # "proposal", "migration"... in refusals
        self.escalation = policy.escalation  # the policy's escalation window
        # Where the process shows a step to ops, as its histories record it: each change at once
        # (a step taken, a step ended) or with the next stage; and, in runs from before
        # STEP_OPENS_PATCH, once the step is open.
        self.show_ends = show_ends
        self.show_opened = show_opened
        self.actors: Callable[[], list[Awaiting]] = list
        self.deadline: datetime | None = None
        self.extensions = 0
        self.opened = False  # a step has opened in this process (a continued run: set by it)
        self.closed = False  # its closing record is stored
        self.current: Step | None = None  # the step being awaited
        self.takers = 0  # step Updates taking their step now (not yet recorded)

    # --- what ops, the API and the validators see ------------------------------------------

    def show(self) -> None:
        """Who is awaited, until when — in the API, the projection and the Temporal UI."""
        if self.state.status is ProcessStatus.ACTIVE:
            self.state.awaiting = [
                a.model_copy(update={"deadline": a.deadline or self.deadline})
                for a in self.actors()
            ]
        else:
            self.state.awaiting = []
        stage, status, awaiting = self.ledger.view()
        self.ledger.show(stage=stage, status=status, awaiting=awaiting)

    def clear(self) -> None:
        """No step awaited (a new stage, a closed step)."""
        self.state.step = None
        self.state.awaiting = []
        self.actors = list
        self.deadline = None

    def ensure_active(self) -> None:
        """An Update (a withdrawal, a decline) may have closed the process while the run was
        busy: the run ends there."""
        if self.state.status is not ProcessStatus.ACTIVE:
            raise Ended

    def require_active(self) -> None:
        if self.state.status is not ProcessStatus.ACTIVE:
            refuse(Refusal.WRONG_STAGE, f"the {self.what} is {self.state.status.value}")

    def require_step(self, step: str) -> None:
        self.require_active()
        if self.state.step != step:
            now = f"awaiting {self.state.step}" if self.state.step else "not awaiting a step"
            stage, _, _ = self.ledger.view()
            refuse(Refusal.WRONG_STAGE, f"{step} is not awaited now ({stage}: {now})")

    def require_partner_step(self, act: Act[Any], partner_id: str, step: str) -> None:
        """The process's partner, sending the step awaited now, once: the status field named
        after the step holds what was taken."""
        require_partner(act.actor, partner_id)
        self.require_step(step)
        if getattr(self.state, step) is not None:  # a retry whose first attempt landed (P-4)
            refuse(Refusal.ALREADY_DONE, f"{step} has already been submitted")

    async def take(
        self, step: str, act: Act[Any], *, rules: list[str], data: dict[str, Any] | None = None
    ) -> None:
        """Keep a step's content in the status field named after it; record `<step>_submitted`.
        A second copy validated in the same workflow task as the first (both before either was
        taken) is refused here, once taken (P-4)."""
        if getattr(self.state, step) is not None and workflow.patched(TAKEN_ONCE_PATCH):
            refuse(Refusal.ALREADY_DONE, f"{step} has already been submitted")
        setattr(
            self.state, step, StepRecord(body=act.body, actor=act.actor.name, at=workflow.now())
        )
        if self.show_ends:
            self.show()
        await self.ledger.emit(
            step, f"{step}_submitted", actor=act.actor.name, rules=rules, data=data
        )

    # --- one step, from its opening to its end ----------------------------------------------

    async def wait(self, step: Step) -> bool:
        """Await `step` until it is done or its deadline has passed, with a reminder; a missed
        step escalates as the step says. Returns whether it was done."""
        self.ensure_active()
        opened = step.opened or workflow.now()
        self.current = step
        self.actors = step.actors
        self.deadline = step.due or workflow.now() + step.window.period
        self.show()
        deadline = self.deadline

        def open_step() -> None:
            """The step is open (its Updates accepted) only once its window is on record; its
            search attributes and awaited actors were shown with the window."""
            if step.on_open is not None:
                step.on_open()
            elif self.state.status is ProcessStatus.ACTIVE:
                self.state.step = step.name
            self.opened = True
            self.ledger.settled()

        record = step.opening or partial(
            self.ledger.emit,
            f"window:{step.name}",
            "window_opened",
            rules=list(step.rules),
            data={"step": step.name, "deadline": deadline.isoformat()},
        )

        async def opening() -> None:
            """The opening's record leaves the status with the step open (P-8)."""
            self.ledger.opening = {"step": step.shows or step.name}
            try:
                await record()
            finally:
                self.ledger.opening = {}

        await record_and_wait(
            opening,
            open_step,
            lambda: self._wait(step, opened),
            show=self.show if self.show_opened else None,
        )
        # The step's own events (reviews, votes...) are written before the process moves on:
        # every Update taking a step counts itself (`takers`) — the same handlers as
        # `all_handlers_finished` counted before, less those waiting for the run to rest.
        await workflow.wait_condition(lambda: self.takers == 0)
        self.current = None
        self.ensure_active()
        done = step.done()
        missing = [a.actor for a in step.actors()]
        # Closed before the miss is recorded: a step sent meanwhile is refused, not taken by a
        # run that is about to expire (no command: ops see it with what comes next).
        self.clear()
        if not done and step.miss_recorded:
            await self.ledger.emit(
                f"missed:{step.name}",
                "deadline_missed",
                rules=list(step.rules),
                data={"step": step.name, "missing": missing},
            )
        if self.show_ends:
            self.show()
        return done

    async def _wait(self, step: Step, opened: datetime) -> None:
        def finished() -> bool:
            return step.done() or self.state.status is not ProcessStatus.ACTIVE

        escalations = 0
        while True:
            in_time = await wait_with_deadline(
                finished,
                opened_at=opened,
                deadline=self._deadline,
                window=step.window,
                on_reminder=partial(self._remind, step, escalations),
            )
            if in_time or step.escalation is None:
                return
            escalations += 1
            now = workflow.now()
            lapsed = self._deadline()
            grace = self.escalation.period
            if step.escalation is Escalate.CHASE:
                self.deadline = now + grace
            else:
                cgb = Awaiting(
                    actor=Body.CGB.value,
                    action=f"escalated: extend the {step.name} deadline or let it lapse",
                    deadline=now + grace,
                )
                self.actors = lambda cgb=cgb: [*step.actors(), cgb]  # type: ignore[misc]
            missing = [a.actor for a in step.actors()]
            if step.on_escalate is not None:
                step.on_escalate(self._deadline())
            self.show()
            await self.ledger.emit(
                step.key("escalated", escalations),
                "escalated",
                rules=list(step.rules),
                data={"step": step.name, "missing": missing, "to": Body.CGB.value},
            )
            if step.escalation is Escalate.CHASE:
                await wait_with_deadline(
                    finished,
                    opened_at=now,
                    deadline=self._deadline,
                    window=self.escalation,
                    on_reminder=partial(self._remind, step, escalations),
                )
                return
            try:
                await workflow.wait_condition(
                    lambda lapsed=lapsed: finished() or self._deadline() != lapsed,  # type: ignore[misc]
                    timeout=grace,
                )
            except TimeoutError:
                return
            self.actors = step.actors
            self.show()
            if finished():
                return

    async def _remind(self, step: Step, n: int) -> None:
        await self.ledger.emit(
            step.key("reminder", n),
            "reminder",
            rules=list(step.rules),
            data={"step": step.name, "awaiting": [a.actor for a in step.actors()]},
        )

    def _deadline(self) -> datetime:
        assert self.deadline is not None
        return self.deadline

    # --- CGB moves a deadline (P-3) ---------------------------------------------------------

    def check_extension(self, act: Act[DeadlineExtension]) -> None:
        require_role(act.actor, Role.CGB, Role.ADMIN)
        self.require_active()
        if self.state.step is None or self.deadline is None:
            refuse(Refusal.WRONG_STAGE, "no deadline is pending")
        refuse_decision(
            check_extension(act.body.until, self.deadline, workflow.now()),
            "an extension moves the deadline later",
        )

    async def extend(self, act: Act[DeadlineExtension]) -> None:
        """The running timer sees the new deadline at once (`wait_with_deadline` re-reads it)."""
        previous = self.deadline
        self.deadline = act.body.until
        self.extensions += 1
        self.show()
        await self.ledger.emit(
            f"extended:{self.extensions}",
            "deadline_extended",
            actor=act.actor.name,
            rules=["P-3"],
            data={
                "step": self.state.step,
                "from": previous.isoformat() if previous else None,
                "until": act.body.until.isoformat(),
                "reason": act.body.reason,
            },
        )

    # --- the end ----------------------------------------------------------------------------

    async def close(
        self,
        status: ProcessStatus,
        event: str,
        *,
        actor: str = "system",
        rules: list[str],
        data: dict[str, object] | None = None,
        end_run: bool = True,
    ) -> None:
        """Close the process with its final event; an early end (not completed) ends the run
        too, unless an Update closed it (the run sees the status and ends itself)."""
        self.state.status = status
        self.state.closed_at = workflow.now()
        self.clear()
        self.show()
        await self.ledger.emit(
            f"finished:{status.value}", event, actor=actor, rules=rules, data=data
        )
        self.closed = True
        self.ledger.settled()
        if end_run and status is not ProcessStatus.COMPLETED:
            raise Ended

    # --- answers (P-8) ----------------------------------------------------------------------

    @asynccontextmanager
    async def taking(self) -> AsyncIterator[None]:
        """Around a step's Update: counted while it takes the step (the process moves on once
        the step is recorded); then, when the step is done and the process will move on, it
        returns only once the process has come to rest — its next step open, a stepless wait
        begun or the process closed — so its answer says what may be sent next (P-8). Runs
        whose Updates answered before (no SETTLE_PATCH) answer at once, as their histories say."""
        self.takers += 1
        try:
            yield
        finally:
            self.takers -= 1
        step = self.current
        if step is None or not step.done() or not workflow.patched(SETTLE_PATCH):
            return
        rested = self.ledger.settles
        # Closed is at rest for good — also when this Update closed it (a withdrawal racing
        # the step's last Update): the run ends and nothing would come to rest after it.
        await workflow.wait_condition(lambda: self.ledger.settles > rested or self.closed)

    async def first_step(self) -> None:
        """What a start waits for before it answers: the process's first step open (its record
        stored: the projection shows it) or the process closed. A continued run has had it."""
        await workflow.wait_condition(lambda: self.opened or self.closed)


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


# Runs that took a step twice (two copies validated together) replay so; new ones refuse the
# second (P-4).
TAKEN_ONCE_PATCH = "step-taken-once"

# Runs whose step Updates answered once recorded replay so; new ones answer once at rest (P-8).
SETTLE_PATCH = "step-answers-once-at-rest"

# Runs that opened a step before record_and_wait existed replay without it.
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
    completion makes no command: `open_step` only changes state — an Update applied in the
    same workflow task as that completion replays in either order (README, Known issues).
    Runs opened before this replay the old order: record, open, `show`, wait."""
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
