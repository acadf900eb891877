"""An expansion's monitoring stage (E-12.1 stage 6, E-11.1): the partner's telemetry checked on
durable timers over the policy's period, and a check that breaches the policy's thresholds put
to CGB within the review deadline (P-3) — go on, roll the release's grants back, or open a
remediation (what a missed deadline applies). A mixin of PartnerExpansion: the same run."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.governance import GovernanceActivities
    from activities.migration import MigrationActivities
    from activities.processes import ProcessStarter
    from kwanus.models.common import Awaiting, StepRecord
    from kwanus.models.expansion import ExpansionInput, ExpansionStatus, ReleaseInput
    from kwanus.models.remediation import RemediationInput
    from policy.document import PolicyDocument
    from policy.expansion import breached
    from policy.forms import MonitoringDecision
    from policy.tiers import moves_tier
    from policy.vocabulary import Body, ExpansionStage, Severity
    from workflows.common import Ledger, call, monitor
    from workflows.steps import Step, Steps

# Runs that were monitoring before the loop ran until a check covers the end replay without it.
MONITORING_END_PATCH = "monitoring-covers-its-end"
# Runs monitoring before a breach was put to CGB replay monitoring on.
BREACH_PATCH = "monitoring-breach-decided"


class Watch:
    """The part of PartnerExpansion that watches the release and acts on a breach."""

    inp: ExpansionInput
    policy: PolicyDocument
    state: ExpansionStatus
    steps: Steps
    ledger: Ledger

    if TYPE_CHECKING:

        async def _enter(self, stage: ExpansionStage) -> None: ...

    async def _monitoring(self) -> None:
        """Stage 6: the partner's telemetry checked periodically over the policy's monitoring
        period, on durable timers (E-11.1 monitoring plan). A long period continues as a new
        run when the server suggests it, the checks so far carried in the state. A breach is
        put to CGB; a roll-back ends the stage."""
        m = self.policy.monitoring
        if self.state.monitoring_until is None:  # not yet in the stage (a continued run is)
            self.steps.ensure_active()
            self.state.monitoring_until = workflow.now() + m.expansion_period
            await self._enter(ExpansionStage.MONITORING)
        end = self.state.monitoring_until
        checks = self.state.monitoring
        decides = workflow.patched(BREACH_PATCH)

        def undecided_breach() -> bool:
            decisions = self.state.monitoring_decisions
            return bool(
                decides
                and checks
                and breached(checks[-1].findings)
                and (not decisions or checks[-1].at > decisions[-1].at)
            )

        def going(last: datetime) -> bool:
            """Until a check covers the period's end; one at least, however late it began
            (runs from before MONITORING_END_PATCH stop at the end's clock time) — or until a
            check breaches the thresholds."""
            if not checks:
                return True
            if undecided_breach():
                return False
            if workflow.patched(MONITORING_END_PATCH):
                return last < end
            return workflow.now() < end

        while True:
            await monitor(
                self.ledger,
                checks,
                since=checks[-1].at if checks else end - m.expansion_period,
                going=going,
                pause=lambda: min(m.check_interval, end - workflow.now()),
                resume=lambda: self.inp.model_copy(update={"resume": self.state}),
                policy=self.policy,
                rules=["E-12.1", "E-11.1"],
            )
            if not undecided_breach():
                return
            if await self._decide_on_the_breach() == "roll_back":
                return

    async def _decide_on_the_breach(self) -> str:
        """P-3: CGB decides within the review deadline; a missed deadline applies `remediate`."""
        n = len(self.state.monitoring_decisions)
        findings = "; ".join(f.message for f in self.state.monitoring[-1].findings)
        decided = await self.steps.wait(
            Step(
                name=f"monitoring_decision:{n + 1}",
                window=self.policy.review,
                actors=lambda: [
                    Awaiting(actor=Body.CGB.value, action=f"decide on the breach: {findings}"),
                    Awaiting(actor=Body.SCO.value, action="may recommend on the breach"),
                ],
                done=lambda: len(self.state.monitoring_decisions) > n,
                rules=("P-3", "E-12.1"),
            )
        )
        if not decided:
            self.state.monitoring_decisions.append(
                StepRecord(
                    body=MonitoringDecision(decision="remediate", rationale="deadline missed"),
                    actor="system",
                    at=workflow.now(),
                )
            )
        decision = self.state.monitoring_decisions[-1].body.decision
        if decision == "roll_back":
            await self._roll_back()
        elif decision == "remediate":
            await self._remediate_breach(n + 1, findings)
        return decision

    async def _roll_back(self) -> None:
        """E-12.1 / E-2.7: a governance update revoking what the release granted (before and
        after on record); a category B's grants came with its tier migration, not here."""
        proposal = self.inp.proposal
        names = [] if moves_tier(proposal, self.policy) else [g.name for g in proposal.grants]
        assert self.state.release is not None
        await call(
            GovernanceActivities.release_grants,
            ReleaseInput(
                event=self.ledger.now_event(
                    "rolled_back", "rolled_back", rules=["E-12.1", "E-2.7"], data={"removes": names}
                ),
                partner_id=self.inp.partner_id,
                add=[],
                removes=names,
                release=self.state.release.body.version,
                declared=[],
            ),
            summary="roll the release back",
        )

    async def _remediate_breach(self, n: int, findings: str) -> None:
        """M-9: the breach opens a remediation of the partner (its own process, not waited on)."""
        partner = await call(
            MigrationActivities.partner_state, self.inp.partner_id, summary="read partner state"
        )
        remediation_id = f"exp-{self.inp.expansion_id}-v{n}"  # ids no client may take (P-1)
        await call(
            ProcessStarter.start_remediation,
            RemediationInput(
                remediation_id=remediation_id,
                partner_id=self.inp.partner_id,
                partner_tier=partner.tier,
                severity=Severity.MINOR,
                kind="monitoring_breach",
                description=f"Expansion {self.inp.expansion_id} breached its monitoring: "
                + findings,
                opened_at=workflow.now(),
                policy=self.policy,
                origin=self.state.workflow_id,
                opened_by="CGB",
            ),
            summary=f"open remediation {remediation_id}",
        )
        await self.ledger.emit(
            f"breach_remediation:{n}",
            "remediation_opened",
            rules=["E-12.1", "M-9.1"],
            data={"remediation_id": remediation_id},
        )
