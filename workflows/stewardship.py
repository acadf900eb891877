"""StewardshipReview: the annual review (E-13.1, M-10.1), started yearly by a Temporal Schedule or
on demand. It compiles the year's figures from the store into a report, then waits for TSC, SCO,
ERC and CGB to sign it off before a deadline; a missed deadline is escalated to CGB with the
escalation window (P-3), after which the review closes with the missing bodies named."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.governance import GovernanceActivities
    from kwanus.contract import OPENED_UPDATE, STEWARDSHIP, STEWARDSHIP_WORKFLOW, Refusal
    from kwanus.models.common import Act, Awaiting
    from kwanus.models.stewardship import CompileInput, Signoff, StewardshipInput, StewardshipStatus
    from policy.document import PolicyDocument
    from policy.expansion import stewardship_signed_off
    from policy.forms import StewardshipSignoff
    from policy.vocabulary import Body, ProcessKind, ProcessStatus, Role
    from workflows.common import (
        ACTIVITY_RETRY,
        ACTIVITY_TIMEOUT,
        Ledger,
        call,
        refuse,
        require_role,
    )
    from workflows.steps import Escalate, Step, Steps

STAGE = STEWARDSHIP.first_stage
PREFIX = "stewardship-"
BODIES = (Role.TSC, Role.SCO, Role.ERC, Role.CGB)


@workflow.defn(name=STEWARDSHIP_WORKFLOW)
class StewardshipReview:
    @workflow.init
    def __init__(self, inp: StewardshipInput) -> None:
        workflow_id = workflow.info().workflow_id
        self.report_id = inp.report_id or workflow_id.removeprefix(PREFIX)
        self.state = StewardshipStatus(
            id=self.report_id,
            workflow_id=workflow_id,
            stage=STAGE,
            status=ProcessStatus.ACTIVE,
            policy_version=inp.policy.version if inp.policy else 0,
            started_at=workflow.info().start_time,
        )
        self.ledger: Ledger | None = None
        self.steps: Steps | None = None

    @workflow.run
    async def run(self, inp: StewardshipInput) -> StewardshipStatus:
        policy: PolicyDocument
        if inp.policy is not None:
            policy = inp.policy
        else:  # a scheduled run: the version in force now (P-5)
            policy = await workflow.execute_activity_method(
                GovernanceActivities.current_policy,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
                summary="read the policy in force",
            )
        self.state.policy_version = policy.version
        steps = self.steps = Steps(
            ProcessKind.STEWARDSHIP,
            lambda: self.state,
            policy,
            what="stewardship review",
            show_ends=False,
            show_opened=False,
        )
        ledger = self.ledger = steps.ledger
        self.state.figures = await call(
            GovernanceActivities.compile_stewardship,
            CompileInput(
                report_id=self.report_id,
                workflow_id=self.state.workflow_id,
                at=workflow.now(),
                policy=policy,
            ),
            summary="compile the year's figures",
        )
        deadline = self.state.deadline = workflow.now() + policy.signoff.period

        def escalated(until: datetime) -> None:
            """P-3: escalated to CGB, who chases the missing bodies within the escalation
            window."""
            self.state.escalated = True
            self.state.deadline = until

        signed = await steps.wait(
            Step(
                name="signoffs",
                window=policy.signoff,
                actors=self._awaited,
                done=self._signed,
                rules=("P-3", "M-10.1"),
                due=deadline,
                escalation=Escalate.CHASE,
                on_escalate=escalated,
                opening=partial(
                    ledger.emit,
                    "compiled",
                    "report_compiled",
                    actor=inp.requested_by,
                    rules=["E-13.1", "M-10.1"],
                    data={"deadline": deadline.isoformat()},
                ),
                only=True,
                miss_recorded=False,  # its close names the missing bodies
            )
        )
        await steps.close(
            ProcessStatus.COMPLETED if signed else ProcessStatus.EXPIRED,
            "signed_off" if signed else "signoffs_missed",
            rules=["E-13.1", "M-10.1"] if signed else ["P-3", "M-10.1"],
            data={"missing": self._missing()},
            end_run=False,
        )
        return self.state

    @workflow.update(name="signoff")
    async def signoff(self, act: Act[StewardshipSignoff]) -> StewardshipStatus:
        assert self.steps is not None
        async with self.steps.taking():
            body = Body(act.actor.role.value)
            self.state.signoffs[body] = Signoff(
                notes=act.body.notes, actor=act.actor.role.value, at=workflow.now()
            )
            assert self.ledger is not None
            self.steps.show()
            await self.ledger.emit(
                f"signoff:{body.value}", "signed_off_by", actor=body.value, rules=["M-10.1"]
            )
        return self.state

    @signoff.validator
    def _check_signoff(self, act: Act[StewardshipSignoff]) -> None:
        require_role(act.actor, *BODIES)
        if self.state.status is not ProcessStatus.ACTIVE or self.state.step != "signoffs":
            refuse(Refusal.WRONG_STAGE, "the report is not awaiting sign-offs")
        if Body(act.actor.role.value) in self.state.signoffs:
            refuse(Refusal.ALREADY_DONE, f"{act.actor.role.value} has signed it off")

    @workflow.update(name=OPENED_UPDATE)
    async def opened(self) -> None:
        """A start's Update (P-8): returns once the sign-offs are open, or the review closed."""
        await workflow.wait_condition(lambda: self.steps is not None)
        assert self.steps is not None
        await self.steps.first_step()

    @workflow.query(name="status")
    def status(self) -> StewardshipStatus:
        return self.state

    def _missing(self) -> list[str]:
        return [b.value for b in Body if b not in self.state.signoffs]

    def _signed(self) -> bool:
        return stewardship_signed_off(set(self.state.signoffs)).allowed

    def _awaited(self) -> list[Awaiting]:
        missing = self._missing()
        awaited = [Awaiting(actor=b, action="sign off the stewardship report") for b in missing]
        if self.state.escalated and Role.CGB.value not in missing and missing:
            chase = f"escalated: chase the sign-offs of {', '.join(missing)}"
            awaited.append(Awaiting(actor=Role.CGB.value, action=chase))
        return awaited
