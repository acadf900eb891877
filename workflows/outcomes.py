"""What a migration does when a check fails or its partner does not act (Migration Playbook §8,
§9, M-2.3, M-4.7): validation and the remediation a failure opens (M-8, M-9), the forced
outcome applied at the window's end (M-2.3), and the decision at an unhealthy fallback's end
(P-3, M-4.7). A mixin of PartnerMigration: the same run, its state and its steps."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.migration import MigrationActivities
    from activities.processes import ProcessStarter
    from kwanus.contract import VALIDATION_FAILED, remediation_workflow_id
    from kwanus.models.common import Awaiting
    from kwanus.models.migration import (
        MigrationDecision,
        MigrationInput,
        MigrationStatus,
        RemediationLink,
        RolloutInput,
        ValidationInput,
    )
    from kwanus.models.remediation import RemediationInput
    from policy.decisions import Finding
    from policy.document import PolicyDocument
    from policy.migration import add_months
    from policy.remediation import deadline as remediation_deadline
    from policy.remediation import validation_severity
    from policy.vocabulary import (
        VALIDATION_CHECKS,
        MigrationStage,
        MigrationType,
        ProcessStatus,
        TriggerClass,
    )
    from workflows.common import Ledger, call
    from workflows.steps import Step, Steps

# Runs whose forced migration's window ended before its target applied then replay expiring.
ENFORCE_PATCH = "forced-outcome-applies"


class Enforced(Exception):
    """The forced target applied at the window's end: the partner's steps are over."""


class Outcomes:
    """The part of PartnerMigration that reaches an outcome without the partner."""

    inp: MigrationInput
    policy: PolicyDocument
    state: MigrationStatus
    steps: Steps
    ledger: Ledger
    partner: str
    escalation: str | None

    if TYPE_CHECKING:

        async def _enter(self, stage: MigrationStage) -> None: ...

    async def _validation(self) -> None:
        """M-4.4 / M-8.1: four checks, each an activity with its result recorded. A failure
        (M-8.2) opens a remediation with the severity the policy gives it (M-9) and waits for
        it: remediated → validate again; its window missed → the migration stops here (the
        remediation has started the forced tier downgrade, M-9.3). A forced migration waits no
        longer than its window: then, or if the remediation is missed, its target applies."""
        await self._enter(MigrationStage.VALIDATION)
        while True:
            attempt = len(self.state.remediations) + 1
            failures = await self._validate(attempt)
            if not failures:
                return
            link = await self._remediate(attempt, failures)
            enforces = self._enforces()
            closed = await self._remediation_ends(by=self.state.window_end if enforces else None)
            self.steps.clear()
            self.steps.show()
            if enforces and (not closed or link.status is not ProcessStatus.COMPLETED):
                await self._enforce("validation")  # M-2.3: the window ends, the target applies
                raise Enforced
            if link.status is not ProcessStatus.COMPLETED:
                await self.steps.close(
                    ProcessStatus.EXPIRED,
                    "remediation_missed",
                    rules=["M-8.2", "M-9.3"],
                    data={"remediation_id": link.id, "escalation_migration": self.escalation},
                )
            await self.ledger.emit(
                f"remediated:{attempt}",
                "remediated",
                rules=["M-9.1", "M-4.4"],
                data={"remediation_id": link.id},
            )

    async def _validate(self, attempt: int) -> dict[str, list[Finding]]:
        """Run the four checks (again, after a remediation) and record each result; return the
        findings of those that failed."""
        now = workflow.now()
        implemented = self.state.implementation
        results = await asyncio.gather(
            *(
                call(
                    MigrationActivities.validate,
                    ValidationInput(
                        check=check,
                        partner_id=self.inp.partner_id,
                        target=self.inp.target,
                        policy=self.policy,
                        at=now,
                        manifest=self.state.manifest,
                        since=self.state.moved_at or (implemented.at if implemented else None),
                        trigger=self.inp.trigger,
                        type_=self.inp.type_,
                        subtype=self.inp.subtype,
                        with_tier=self.inp.with_tier,
                    ),
                    summary=f"validate {check}",
                )
                for check in VALIDATION_CHECKS
            )
        )
        suffix = "" if attempt == 1 else f":{attempt}"
        for result in results:
            self.state.validation[result.check] = result
            await self.ledger.emit(
                f"validation:{result.check}{suffix}",
                "validated",
                rules=["M-8.1", *sorted({f.rule for f in result.findings})],
                data={
                    "check": result.check,
                    "attempt": attempt,
                    "passed": result.passed,
                    "findings": [f.message for f in result.findings],
                },
            )
        return {r.check: list(r.findings) for r in results if not r.passed}

    async def _remediate(
        self,
        attempt: int,
        failures: dict[str, list[Finding]],
        why: str = "failed validation",
        kind: str = VALIDATION_FAILED,
    ) -> RemediationLink:
        """M-8.2 → M-9: open the remediation of a failed validation (or of telemetry unhealthy
        at the fallback's end, M-4.7); it reports back (`remediation_closed`) when it ends."""
        severity = validation_severity(failures, self.policy)
        partner = await call(
            MigrationActivities.partner_state,
            self.inp.partner_id,
            summary="read partner state",
        )
        opened_at = workflow.now()
        remediation_id = f"{self.inp.migration_id}-v{attempt}"
        link = RemediationLink(
            id=remediation_id,
            workflow_id=remediation_workflow_id(remediation_id),
            severity=severity,
            status=ProcessStatus.ACTIVE,
            deadline=remediation_deadline(severity, opened_at, self.policy),
        )
        self.state.remediations.append(link)
        findings = [f.message for fs in failures.values() for f in fs]
        await call(
            ProcessStarter.start_remediation,
            RemediationInput(
                remediation_id=remediation_id,
                partner_id=self.inp.partner_id,
                partner_tier=partner.tier,
                severity=severity,
                kind=kind,
                description=f"Migration {self.inp.migration_id} {why}: " + "; ".join(findings),
                opened_at=opened_at,
                policy=self.policy,
                origin=self.state.workflow_id,
                report_to=self.state.workflow_id,
                opened_by="system",
            ),
            summary=f"open remediation {remediation_id}",
        )
        self.state.step = "remediation"
        self.steps.actors = lambda: [
            Awaiting(
                actor=self.partner,
                action=f"remediate the failed validation ({remediation_id})",
                deadline=link.deadline,
            )
        ]
        self.steps.show()
        await self.ledger.emit(
            f"remediation:{attempt}",
            "remediation_opened",
            rules=["M-8.2", "M-9.1", "M-9.2"],
            data={
                "remediation_id": remediation_id,
                "severity": severity.value,
                "failed": sorted(failures),
            },
        )
        return link

    def _remediation_closed(self) -> bool:
        return self.state.remediations[-1].status is not ProcessStatus.ACTIVE

    async def _decide_on_the_fallback(self) -> None:
        """P-3 / M-4.7: the fallback ends with its telemetry unhealthy or missing — a step for
        TSC and CGB: `extend` moves its end (within `fallback_max_months`), `remediate` (also
        what a missed deadline does) opens a remediation the run waits on."""
        n = len(self.state.fallback_decisions)
        findings = [f.message for f in self.state.monitoring[-1].findings]
        decided = await self.steps.wait(
            Step(
                name=f"fallback_decision:{n + 1}",
                window=self.policy.review,
                actors=lambda: [
                    Awaiting(actor=body, action=f"decide on the fallback: {'; '.join(findings)}")
                    for body in ("TSC", "CGB")
                ],
                done=lambda: len(self.state.fallback_decisions) > n,
                rules=("P-3", "M-4.6", "M-4.7"),
            )
        )
        taken = self.state.fallback_decisions[-1].body if decided else None
        if taken is not None and taken.decision == "extend" and taken.months:
            assert self.state.fallback.until is not None
            until = add_months(self.state.fallback.until, taken.months)
            self.state.fallback = self.state.fallback.model_copy(update={"until": until})
            await self.ledger.emit(
                f"fallback_extended:{n + 1}",
                "fallback_extended",
                rules=["M-4.7", "M-6.2"],
                data={"until": until.isoformat(), "months": taken.months},
            )
            return
        attempt = len(self.state.remediations) + 1
        link = await self._remediate(
            attempt,
            {"monitoring": list(self.state.monitoring[-1].findings)},
            "is unhealthy at its fallback's end",
            "unhealthy_at_fallback_end",
        )
        await self._remediation_ends(by=None)
        self.steps.clear()
        self.steps.show()
        if link.status is not ProcessStatus.COMPLETED:
            await self.steps.close(
                ProcessStatus.EXPIRED,
                "remediation_missed",
                rules=["M-4.7", "M-9.3"],
                data={"remediation_id": link.id, "escalation_migration": self.escalation},
            )

    def _enforces(self) -> bool:
        """M-2.3 (Decision): a forced migration's target applies at its window's end."""
        return self.state.trigger_class is TriggerClass.FORCED and workflow.patched(ENFORCE_PATCH)

    async def _remediation_ends(self, *, by: datetime | None) -> bool:
        """Wait for the open remediation to end (until `by`, if given); whether it did."""
        await self.ledger.rest()  # the migration rests on its remediation (P-8)
        if by is None:
            await workflow.wait_condition(self._remediation_closed)
            return True
        try:
            await workflow.wait_condition(
                self._remediation_closed,
                timeout=max(by - workflow.now(), timedelta(seconds=1)),
            )
        except TimeoutError:
            return self._remediation_closed()
        return True

    async def _enforce(self, missed: str) -> None:
        """M-2.3 (Decision): a forced migration's target applies when its window ends, whether
        or not the partner acted — the tier set and what it disallows trimmed (E-7.2, E-7.4), a
        reduction to read-only on the lowest tier — in one activity with its event; the
        read-only fallback stays through the fallback period and the run completes as usual."""
        tier = self.inp.target.get("tier") if self.inp.type_ is MigrationType.TIER else None
        rules = ["M-2.3", "E-7.2", "E-7.4"]
        self.state.decision = MigrationDecision(
            outcome="enforced",
            reasons=[f"the window ended with {missed} not done"],
            rules=rules,
            at=workflow.now(),
        )
        self.state.tier_change = await call(
            MigrationActivities.roll_out,
            RolloutInput(
                event=self.ledger.now_event(
                    "enforced",
                    "enforced",
                    rules=rules,
                    data={"missed": missed, "target": self.inp.target},
                ),
                partner_id=self.inp.partner_id,
                release="",
                declared=[],
                tier=tier,
                trigger=self.inp.trigger,
                subtype=self.inp.subtype,
                origin=self.inp.origin,
                type_=self.inp.type_,
                enforced=True,
            ),
            summary="enforce the forced outcome" + (f": tier {tier}" if tier else ""),
        )
