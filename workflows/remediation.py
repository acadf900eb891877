"""Remediation: one violation (or failed validation) from opening to restored access (M-9).

Steps in order (M-9.1): root cause, plan, fixes (the partner's), re-validation (SCO's review),
then full access restored. The window counts from the violation (M-9.2): minor 30 days,
moderate 14; a severe violation restricts access at once and waits for SCO. A missed window
keeps access restricted and starts a forced tier-downgrade migration (M-9.3, E-7.2).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.governance import GovernanceActivities
    from activities.processes import ProcessStarter
    from kwanus.contract import (
        OPENED_UPDATE,
        REMEDIATION,
        REMEDIATION_WORKFLOW,
        VALIDATION_FAILED,
        Refusal,
        remediation_migration_id,
    )
    from kwanus.models.common import Act, Awaiting, StepRecord
    from kwanus.models.migration import MigrationInput
    from kwanus.models.remediation import (
        PartnerStatusInput,
        RemediationClosed,
        RemediationInput,
        RemediationStatus,
    )
    from policy import remediation as rules
    from policy.document import Deadline
    from policy.forms import RemediationStep
    from policy.steps import REMEDIATION_STEPS, check_remediation_step, says_passed
    from policy.vocabulary import PartnerStatus, ProcessKind, ProcessStatus, Role
    from workflows.common import (
        call,
        refuse,
        refuse_decision,
        require_partner,
        require_role,
    )
    from workflows.steps import Step, Steps

PARTNER_STEPS = ("root_cause", "plan", "fixes")


@workflow.defn(name=REMEDIATION_WORKFLOW)
class Remediation:
    @workflow.init
    def __init__(self, inp: RemediationInput) -> None:
        self.inp = inp
        self.policy = inp.policy  # P-5
        self.state = RemediationStatus(
            id=inp.remediation_id,
            workflow_id=workflow.info().workflow_id,
            partner_id=inp.partner_id,
            severity=inp.severity,
            kind=inp.kind,
            description=inp.description,
            status=ProcessStatus.ACTIVE,
            stage=REMEDIATION.first_stage,
            origin=inp.origin,
            policy_version=inp.policy.version,
            opened_at=inp.opened_at,
        )
        self.steps = Steps(
            ProcessKind.REMEDIATION,
            lambda: self.state,
            inp.policy,
            what="remediation",
            show_ends=False,
            show_opened=True,
        )
        self.ledger = self.steps.ledger
        self.failed_revalidations = 0
        self.open = False

    @workflow.run
    async def run(self, inp: RemediationInput) -> RemediationStatus:
        severe = rules.restrict_at_once(inp.severity)
        # M-9.2: the window counts from the violation; a severe one is restricted at once.
        window = rules.window(inp.severity, self.policy)
        deadline = self.state.deadline = rules.deadline(inp.severity, inp.opened_at, self.policy)

        async def opening() -> None:
            await self.ledger.emit(
                "opened",
                "remediation_opened",
                actor=inp.opened_by,
                rules=["M-9.1", "M-9.2"],
                data={
                    "severity": inp.severity.value,
                    "kind": inp.kind,
                    "deadline": deadline.isoformat(),
                    "origin": inp.origin,
                },
            )
            if severe:
                await self._set_access(PartnerStatus.RESTRICTED, "restricted", ["M-9.2"])

        def open_steps() -> None:
            """Steps are awaited once the opening is on record; they were shown with it."""
            self.open = True
            self._refresh(show=False)

        reminder = min(self.policy.partner_step.reminder, window * 3 / 4)
        remediated = await self.steps.wait(
            Step(
                name="remediation",
                window=Deadline(period=window, reminder=max(reminder, timedelta(seconds=1))),
                actors=self._awaited,
                done=self._remediated,
                rules=("P-3", "M-9.2"),
                due=deadline,
                opened=inp.opened_at,
                opening=opening,
                on_open=open_steps,
                shows=self._next(),
                only=True,
                miss_recorded=False,  # its close says so, and what follows (M-9.3)
            )
        )
        if remediated:
            await self._set_access(PartnerStatus.ACTIVE, "access_restored", ["M-9.1"])
            await self.steps.close(
                ProcessStatus.COMPLETED, "remediated", rules=["M-9.1"], end_run=False
            )
        else:
            await self._escalate()
        await self._report()
        return self.state

    async def _report(self) -> None:
        """Tell the process that opened this remediation (a migration whose validation failed,
        M-8.2) how it ended; it waits for this to re-validate or to stop."""
        if not self.inp.report_to:
            return
        fixes = self.state.steps.get("fixes")
        try:
            await workflow.get_external_workflow_handle(self.inp.report_to).signal(
                "remediation_closed",
                RemediationClosed(
                    remediation_id=self.inp.remediation_id,
                    status=self.state.status,
                    escalation_migration=self.state.escalation_migration,
                    manifest=fixes.body.manifest if fixes else None,
                    fixed_at=fixes.at if fixes else None,
                ),
            )
        except FailureError as exc:  # the origin was terminated by ops: nothing waits any more
            workflow.logger.warning("could not report to %s: %s", self.inp.report_to, exc)

    async def _escalate(self) -> None:
        """M-9.3 / E-7.2: access stays restricted; a forced tier-downgrade migration starts."""
        escalation = rules.missed_window(self.inp.partner_tier, self.policy)
        await self._set_access(PartnerStatus.RESTRICTED, "kept_restricted", ["M-9.3"])
        migration_id = remediation_migration_id(self.inp.remediation_id)
        target = {"tier": escalation.target_tier} if escalation.target_tier else {}
        await call(
            ProcessStarter.start_migration,
            MigrationInput(
                migration_id=migration_id,
                partner_id=self.inp.partner_id,
                trigger=escalation.trigger,
                type_=escalation.type_,
                subtype=escalation.subtype,
                target=target,
                fallback_months=self.policy.fallback_default_months,
                policy=self.policy,
                origin=self.state.workflow_id,
                requested_by="system",
            ),
            summary=f"start forced migration {migration_id}",
        )
        self.state.escalation_migration = migration_id
        await self.steps.close(
            ProcessStatus.EXPIRED,
            "escalated",
            rules=list(escalation.rules),
            data={"migration_id": migration_id, "target": target},
            end_run=False,  # it reports to its origin still
        )

    # --- steps (Updates), in the order of M-9.1 --------------------------------------------

    @workflow.update(name="root_cause")
    async def root_cause(self, act: Act[RemediationStep]) -> RemediationStatus:
        async with self.steps.taking():
            await self._take("root_cause", act)
        return self.state

    @root_cause.validator
    def _check_root_cause(self, act: Act[RemediationStep]) -> None:
        self._check("root_cause", act)

    @workflow.update(name="plan")
    async def plan(self, act: Act[RemediationStep]) -> RemediationStatus:
        async with self.steps.taking():
            await self._take("plan", act)
        return self.state

    @plan.validator
    def _check_plan(self, act: Act[RemediationStep]) -> None:
        self._check("plan", act)

    @workflow.update(name="fixes")
    async def fixes(self, act: Act[RemediationStep]) -> RemediationStatus:
        async with self.steps.taking():
            await self._take("fixes", act)
        return self.state

    @fixes.validator
    def _check_fixes(self, act: Act[RemediationStep]) -> None:
        self._check("fixes", act)

    @workflow.update(name="review")
    async def review(self, act: Act[RemediationStep]) -> RemediationStatus:
        """SCO's re-validation (M-9.1 step 4); a failed one sends the partner back to fixes."""
        async with self.steps.taking():
            if act.body.passed:
                await self._take("revalidation", act)
            else:
                await self._revalidation_failed(act)
        return self.state

    async def _revalidation_failed(self, act: Act[RemediationStep]) -> None:
        self.state.steps.pop("fixes", None)
        self.failed_revalidations += 1
        self._refresh()
        await self.ledger.emit(
            f"revalidation_failed:{self.failed_revalidations}",
            "revalidation_failed",
            actor=act.actor.name,
            rules=["M-9.1"],
            data={"summary": act.body.summary},
        )

    @review.validator
    def _check_review(self, act: Act[RemediationStep]) -> None:
        self._check("revalidation", act)
        refuse_decision(says_passed(act.body.passed), "a re-validation says whether it passed")

    @workflow.update(name=OPENED_UPDATE)
    async def opened(self) -> None:
        """A start's Update (P-8): returns once the first step is open, or the process closed."""
        await self.steps.first_step()

    @workflow.query(name="status")
    def status(self) -> RemediationStatus:
        return self.state

    # --- helpers ---------------------------------------------------------------------------

    def _remediated(self) -> bool:
        return "revalidation" in self.state.steps

    def _next(self) -> str | None:
        done = [s for s in REMEDIATION_STEPS if s in self.state.steps]
        return REMEDIATION_STEPS[len(done)] if len(done) < len(REMEDIATION_STEPS) - 1 else None

    def _check(self, step: str, act: Act[RemediationStep]) -> None:
        if step in PARTNER_STEPS:
            require_partner(act.actor, self.inp.partner_id)
        else:
            require_role(act.actor, Role.SCO)
        if self.state.status is not ProcessStatus.ACTIVE or not self.open:
            refuse(Refusal.WRONG_STAGE, f"the remediation is {self.state.status.value}")
        done = [s for s in REMEDIATION_STEPS if s in self.state.steps]
        refuse_decision(
            check_remediation_step(done, step), f"{step} is not next", kind=Refusal.WRONG_STAGE
        )
        validation = self.inp.report_to and self.inp.kind == VALIDATION_FAILED
        if act.body.manifest is not None and (step != "fixes" or not validation):
            refuse(
                Refusal.INVALID,
                "a manifest comes with the fixes of a migration's failed validation only",
                rule="M-8.1",
                errors={"manifest": "only with the fixes of a failed validation (M-8.1)"},
            )

    async def _take(self, step: str, act: Act[RemediationStep]) -> RemediationStatus:
        self.state.steps[step] = StepRecord(body=act.body, actor=act.actor.name, at=workflow.now())
        self._refresh()
        # Fixes are submitted again after each failed re-validation: each submission is its own
        # event (P-4), so the second is not taken for a retry of the first.
        redone = step == "fixes" and self.failed_revalidations > 0
        await self.ledger.emit(
            f"{step}:{self.failed_revalidations + 1}" if redone else step,
            f"{step}_submitted",
            actor=act.actor.name,
            rules=["M-9.1"],
            data={"summary": act.body.summary},
        )
        return self.state

    def _refresh(self, *, show: bool = True) -> None:
        """The step awaited now, in M-9.1's order; its actor is shown with it."""
        active = self.open and self.state.status is ProcessStatus.ACTIVE
        self.state.step = self._next() if active else None
        if show:
            self.steps.show()

    def _awaited(self) -> list[Awaiting]:
        step = self._next()
        return [self._awaiting(step)] if step else []

    def _awaiting(self, step: str) -> Awaiting:
        actor = Role.SCO.value if step == "revalidation" else f"partner:{self.inp.partner_id}"
        return Awaiting(actor=actor, action=step.replace("_", " "), deadline=self.state.deadline)

    async def _set_access(self, status: PartnerStatus, event: str, rule_ids: list[str]) -> None:
        self.state.restricted = status is PartnerStatus.RESTRICTED
        await call(
            GovernanceActivities.set_partner_status,
            PartnerStatusInput(
                event=self.ledger.now_event(
                    f"access:{event}", event, rules=rule_ids, data={"status": status.value}
                ),
                partner_id=self.inp.partner_id,
                status=status,
            ),
            summary=f"partner access: {status.value}",
        )
