"""PartnerExpansion: one proposal from submission to outcome review (Expansion Protocol §2,
E-12.1): Proposal → Evaluation → Approval → Integration → Release → Monitoring → Review.

Every human step is an Update whose validator refuses what is not awaited (P-2), every wait has
the policy's deadline with a reminder (P-3), and every event goes to the audit log once (P-4).

One process top to bottom — its stages, Updates and validators — in one file of about 600
lines; the step machinery is in workflows/steps.py, the release's effects in released.py.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.governance import GovernanceActivities
    from kwanus import contract
    from kwanus.contract import EXPANSION_WORKFLOW, OPENED_UPDATE, Refusal
    from kwanus.models.common import Act, Awaiting, StepRecord
    from kwanus.models.expansion import (
        DecisionRecord,
        Escalation,
        ExpansionInput,
        ExpansionStatus,
        ReviewRecord,
        RiskInput,
        TierEvidenceInput,
        VoteRecord,
    )
    from policy.document import Deadline
    from policy.forms import (
        DeadlineExtension,
        ImplementationReport,
        IntegrationPlan,
        MonitoringDecision,
        OutcomeReview,
        Plans,
        Release,
        Withdrawal,
    )
    from policy.proposal import check_submission
    from policy.review import CRITERIA, Review, check_review, forbidden_at_review
    from policy.risk import RiskAssessment, plans_given
    from policy.steps import once
    from policy.tiers import is_upgrade, upgrade_eligibility
    from policy.vocabulary import (
        BODY_ROLES,
        Body,
        ExpansionStage,
        Outcome,
        ProcessKind,
        ProcessStatus,
        Role,
        Verdict,
    )
    from policy.vote import (
        Vote,
        VoteResult,
        approval_requirements,
        check_vote,
        tally,
        with_new_tier,
    )
    from workflows import legacy, released
    from workflows.common import (
        call,
        refuse,
        refuse_decision,
        require_partner,
        require_role,
    )
    from workflows.steps import Ended, Escalate, Step, Steps
    from workflows.watch import Watch

# Category-D runs released before their policy change was published replay without it.
POLICY_CHANGE_PATCH = "category-d-publishes-policy"
# Runs released before a release added to what the partner holds (and left the tier and the
# platform's matrix alone) replay their `apply_grant`.
RELEASE_PATCH = "release-adds-to-what-is-held"

# Withdrawal is possible until the release is in (E-2.7 makes the change real).
BEFORE_RELEASE = (
    ExpansionStage.PROPOSAL,
    ExpansionStage.EVALUATION,
    ExpansionStage.APPROVAL,
    ExpansionStage.INTEGRATION,
    ExpansionStage.RELEASE,
)


@workflow.defn(name=EXPANSION_WORKFLOW)
class PartnerExpansion(Watch):
    @workflow.init
    def __init__(self, inp: ExpansionInput) -> None:
        self.inp = inp
        self.policy = inp.policy  # P-5: the version in force at start, kept for the whole run
        self.partner = f"partner:{inp.partner_id}"
        self.state = inp.resume or ExpansionStatus(
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
            policy_change=inp.proposal.policy_change,
            proposal=inp.proposal,
        )
        self.steps = Steps(
            ProcessKind.EXPANSION,
            lambda: self.state,
            inp.policy,
            what="proposal",
            show_ends=True,
            show_opened=True,
        )
        self.ledger = self.steps.ledger
        self.steps.opened = inp.resume is not None  # a continued run opened its steps before
        self.withdrawal: StepRecord[Withdrawal] | None = None

    # --- the process, top to bottom --------------------------------------------------------

    @workflow.run
    async def run(self, inp: ExpansionInput) -> ExpansionStatus:
        try:
            if inp.resume is None:
                await self._submitted(inp)
                await self._evaluation()
                await self._approval()
                await self._integration()
                await self._release()
            await self._monitoring()  # a continued run picks up here
            await self._review()
        except Ended:
            pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    async def _submitted(self, inp: ExpansionInput) -> None:
        """E-2.1: the proposal is on record, with the flags the policy raised."""
        self.steps.show()
        await self.ledger.emit(
            "submitted",
            "submitted",
            actor=self.partner,
            rules=["E-2.1", *sorted({f.rule for f in self.state.flags})],
            data={
                "proposal_sha256": inp.proposal_sha256,
                "category": inp.proposal.category.value,
                "partner_tier": inp.partner_tier,
                "flags": [f.model_dump() for f in self.state.flags],
                "submitted_by": inp.submitted_by,
            },
        )

    async def _evaluation(self) -> None:
        """E-2.2: the four bodies review in parallel, each once, each its own criteria (E-4)."""
        await self._enter(ExpansionStage.EVALUATION)
        reviewed = await self._step(
            "reviews",
            self.policy.review,
            actors=lambda: [
                Awaiting(actor=b.value, action="review")
                for b in Body
                if b not in self.state.reviews
            ],
            done=lambda: len(self.state.reviews) == len(Body) or self._forbidden_found(),
            escalate=True,
        )
        forbidden = forbidden_at_review({b: r.review for b, r in self.state.reviews.items()})
        if not forbidden.allowed:  # E-5.2: no vote may approve it
            reasons = [f.message for f in forbidden.findings]
            await self._decide(VoteResult.rejected(reasons, forbidden.rules))
        if not reviewed:
            await self.steps.close(ProcessStatus.EXPIRED, "expired", rules=["P-3", "E-2.2"])

    async def _approval(self) -> None:
        """E-2.3 risk assessment with its plans, then E-2.4 the vote."""
        await self._enter(ExpansionStage.APPROVAL)
        risk = await call(
            GovernanceActivities.assess_risk,
            RiskInput(
                proposal=self.inp.proposal,
                reviews={b: r.review for b, r in self.state.reviews.items()},
                plans=self.state.plans,
                policy=self.policy,
            ),
            summary="assess risk",
        )
        self.state.risk = risk
        workflow.upsert_search_attributes([contract.RISK_LEVEL.value_set(risk.level.value)])
        await self.ledger.emit(
            "risk",
            "risk_assessed",
            rules=list(risk.rules),
            data={
                "level": risk.level.value,
                "total": risk.total,
                "scores": {k.value: v for k, v in risk.scores.items()},
                "missing_plans": list(risk.missing_plans),
            },
        )
        if is_upgrade(self.inp.proposal, self.inp.partner_tier, self.policy):
            await self._check_upgrade(risk)
        if self._missing_plans():
            planned = await self._step(
                "plans",
                self.policy.partner_step,
                actors=lambda: [
                    Awaiting(
                        actor=self.partner,
                        action=f"submit plans: {', '.join(self._missing_plans())}",
                    )
                ],
                done=lambda: not self._missing_plans(),
                escalate=False,
            )
            if not planned:
                await self.steps.close(ProcessStatus.EXPIRED, "expired", rules=["P-3", "E-2.3"])
        voted = await self._step(
            "votes",
            self.policy.vote,
            actors=lambda: [
                Awaiting(actor=b.value, action="vote") for b in Body if b not in self.state.votes
            ],
            done=lambda: self._tally().outcome is not Outcome.PENDING,
            escalate=True,
        )
        cgb = self.state.reviews.get(Body.CGB)
        await self._decide(
            with_new_tier(
                self._tally(final=not voted),
                self.inp.proposal,
                sustainability_reviewed=cgb is not None
                and cgb.review.criteria.get("sustainability") is Verdict.PASS,
            )
        )

    async def _check_upgrade(self, risk: RiskAssessment) -> None:
        """E-7.1 in full once the risk is known: the evidence as recorded now (it was checked at
        submission too, but months may have passed) and a low risk; each failure named."""
        evidence = await call(
            GovernanceActivities.tier_evidence,
            TierEvidenceInput(partner_id=self.inp.partner_id, at=workflow.now()),
            summary="read tier evidence",
        )
        eligible = upgrade_eligibility(
            evidence, risk_level=risk.level, now=workflow.now(), policy=self.policy
        )
        reasons = tuple(f"{f.field}: {f.message}" for f in eligible.findings)
        await self.ledger.emit(
            "tier_evidence",
            "tier_evidence_checked",
            rules=["E-7.1"],
            data={"eligible": eligible.allowed, "findings": list(reasons)},
        )
        if not eligible.allowed:
            await self._decide(VoteResult.rejected(reasons, ["E-7.1"]))

    async def _integration(self) -> None:
        """E-2.5 the integration plan, then E-2.6 implementation — both the partner's."""
        await self._enter(ExpansionStage.INTEGRATION)
        await self._partner_step(
            "integration_plan",
            "submit the integration plan",
            lambda: self.state.integration_plan is not None,
            rules=["E-2.5"],
        )
        await self._partner_step(
            "implementation",
            "report development, testing and documentation",
            lambda: self.state.implementation is not None,
            rules=["E-2.6"],
        )

    async def _release(self) -> None:
        """E-2.7: the versioned release is the governance update — the approved grants added to
        what the partner holds at release, exactly `removes` taken away, the partner's declared
        compatibility stored as its own (E-9.2), never a platform row. The tier is not changed
        here: a category B release starts the tier migration whose rollout moves it (E-7.1); an
        applicable migration plan starts its migration too."""
        await self._enter(ExpansionStage.RELEASE)
        await self._partner_step(
            "release",
            "publish the versioned release",
            lambda: self.state.release is not None,
            rules=["E-2.7"],
        )
        assert self.state.release is not None
        proposal = self.inp.proposal
        if proposal.new_tier is not None:  # E-7.3: into the catalogue, then migrated to
            await released.add_tier(self.ledger, proposal.new_tier)
        if proposal.policy_change and workflow.patched(POLICY_CHANGE_PATCH):  # E-3.4
            self.state.policy_published = await released.publish_policy(
                self.ledger, proposal.policy_change
            )
        if workflow.patched(RELEASE_PATCH):
            await released.update_grants(self.ledger, self.inp, self.state.release.body)
        else:
            await legacy.release_over_nothing(self.ledger, self.inp, self.state.release.body)
        if proposal.migration_plan_required:
            await released.start_migration(self.ledger, self.inp, self.state)

    async def _review(self) -> None:
        """Stage 7: CGB reviews the outcome."""
        await self._enter(ExpansionStage.REVIEW)
        reviewed = await self._step(
            "outcome_review",
            self.policy.review,
            actors=lambda: [Awaiting(actor=Body.CGB.value, action="record the outcome review")],
            done=lambda: self.state.outcome_review is not None,
            escalate=False,
        )
        await self.steps.close(
            ProcessStatus.COMPLETED,
            "completed",
            rules=["E-12.1"],
            data={"outcome_review": "recorded" if reviewed else "missed"},
        )

    # --- human steps (Updates; validators refuse without leaving an event, P-2) ------------

    @workflow.update(name="review")
    async def review(self, act: Act[Review]) -> ExpansionStatus:
        async with self.steps.taking():
            body = Body(act.actor.role.value)
            self._once(body, self.state.reviews, "E-2.2", "reviewed")  # raced past the validator
            self.state.reviews[body] = ReviewRecord(
                review=act.body, actor=act.actor.name, at=workflow.now()
            )
            self.steps.show()
            rules = sorted({CRITERIA[c][1] for c in act.body.criteria} | {"E-2.2"})
            await self.ledger.emit(
                f"review:{body.value}",
                "reviewed",
                actor=act.actor.name,
                rules=rules + (["E-5.2"] if act.body.forbidden else []),
                data={
                    "criteria": {k: v.value for k, v in act.body.criteria.items()},
                    "recommendation": act.body.recommendation.value,
                    "forbidden": [f.value for f in act.body.forbidden],
                },
            )
        return self.state

    @review.validator
    def _check_review(self, act: Act[Review]) -> None:
        require_role(act.actor, *sorted(BODY_ROLES))
        self.steps.require_step("reviews")
        body = Body(act.actor.role.value)
        self._once(body, self.state.reviews, "E-2.2", "reviewed")
        refuse_decision(check_review(body, act.body), f"the {body.value} review is incomplete")

    @workflow.update(name="plans")
    async def plans(self, act: Act[Plans]) -> ExpansionStatus:
        async with self.steps.taking():
            self.state.plans.update(act.body.given())
            if self.state.risk is not None:
                self.state.risk = self.state.risk.model_copy(
                    update={"missing_plans": tuple(self._missing_risk_plans())}
                )
            self.steps.show()
            await self.ledger.emit(
                f"plans:{len(self.state.plans)}",
                "plans_submitted",
                actor=act.actor.name,
                rules=["E-2.3", "E-5.1"],
                data={"plans": sorted(act.body.given())},
            )
        return self.state

    @plans.validator
    def _check_plans(self, act: Act[Plans]) -> None:
        require_partner(act.actor, self.inp.partner_id)
        self.steps.require_step("plans")
        refuse_decision(plans_given(act.body.given()))

    @workflow.update(name="vote")
    async def vote(self, act: Act[Vote]) -> ExpansionStatus:
        async with self.steps.taking():
            body = Body(act.actor.role.value)
            self._once(body, self.state.votes, "E-2.4", "voted")  # raced past the validator
            self.state.votes[body] = VoteRecord(
                vote=act.body, actor=act.actor.name, at=workflow.now()
            )
            self.steps.show()
            await self.ledger.emit(
                f"vote:{body.value}",
                "voted",
                actor=act.actor.name,
                rules=["E-2.4"] + (["E-10.2"] if act.body.long_term_harm else []),
                data={"decision": act.body.decision.value, "rationale": act.body.rationale},
            )
        return self.state

    @vote.validator
    def _check_vote(self, act: Act[Vote]) -> None:
        require_role(act.actor, *sorted(BODY_ROLES))
        self.steps.require_step("votes")
        body = Body(act.actor.role.value)
        self._once(body, self.state.votes, "E-2.4", "voted")
        refuse_decision(check_vote(body, act.body))

    @workflow.update(name="integration_plan")
    async def integration_plan(self, act: Act[IntegrationPlan]) -> ExpansionStatus:
        async with self.steps.taking():
            await self.steps.take("integration_plan", act, rules=["E-2.5"])
        return self.state

    @integration_plan.validator
    def _check_integration_plan(self, act: Act[IntegrationPlan]) -> None:
        self.steps.require_partner_step(act, self.inp.partner_id, "integration_plan")

    @workflow.update(name="implementation")
    async def implementation(self, act: Act[ImplementationReport]) -> ExpansionStatus:
        async with self.steps.taking():
            await self.steps.take("implementation", act, rules=["E-2.6"])
        return self.state

    @implementation.validator
    def _check_implementation(self, act: Act[ImplementationReport]) -> None:
        self.steps.require_partner_step(act, self.inp.partner_id, "implementation")
        refuse_decision(act.body.references())  # E-2.6 (a validator: never run on replay)

    @workflow.update(name="release")
    async def release(self, act: Act[Release]) -> ExpansionStatus:
        async with self.steps.taking():
            await self.steps.take(
                "release", act, rules=["E-2.7", "E-9.1"], data={"version": act.body.version}
            )
        return self.state

    @release.validator
    def _check_release(self, act: Act[Release]) -> None:
        self.steps.require_partner_step(act, self.inp.partner_id, "release")

    @workflow.update(name="outcome_review")
    async def outcome_review(self, act: Act[OutcomeReview]) -> ExpansionStatus:
        async with self.steps.taking():
            await self.steps.take(
                "outcome_review", act, rules=["E-12.1"], data={"outcome": act.body.outcome}
            )
        return self.state

    @outcome_review.validator
    def _check_outcome_review(self, act: Act[OutcomeReview]) -> None:
        require_role(act.actor, Role.CGB)
        self.steps.require_step("outcome_review")
        if self.state.outcome_review is not None:  # a retry whose first attempt landed (P-4)
            refuse(Refusal.ALREADY_DONE, "the outcome review has already been recorded")

    @workflow.update(name="monitoring_decision")
    async def monitoring_decision(self, act: Act[MonitoringDecision]) -> ExpansionStatus:
        """CGB decides; SCO's is a recommendation, on record for CGB (as with reviews)."""
        async with self.steps.taking():
            record: StepRecord[MonitoringDecision] = StepRecord(
                body=act.body, actor=act.actor.name, at=workflow.now()
            )
            n = len(self.state.monitoring_decisions) + 1
            if act.actor.role is Role.SCO:
                self.state.monitoring_recommendations.append(record)
                event, step = "monitoring_recommended", f"monitoring_recommended:{n}"
            else:
                self.state.monitoring_decisions.append(record)
                event, step = "monitoring_decided", f"monitoring_decided:{n}"
            await self.ledger.emit(
                step,
                event,
                actor=act.actor.name,
                rules=["E-12.1", "P-3"],
                data={"decision": act.body.decision, "rationale": act.body.rationale},
            )
        return self.state

    @monitoring_decision.validator
    def _check_monitoring_decision(self, act: Act[MonitoringDecision]) -> None:
        require_role(act.actor, Role.CGB, Role.SCO)
        n = len(self.state.monitoring_decisions) + 1
        self.steps.require_step(f"monitoring_decision:{n}")
        if act.actor.role is Role.SCO and any(
            r.at > self.state.monitoring[-1].at for r in self.state.monitoring_recommendations
        ):
            refuse(Refusal.ALREADY_DONE, "SCO has recommended on this breach", rule="E-12.1")

    @workflow.update(name="withdraw")
    async def withdraw(self, act: Act[Withdrawal]) -> ExpansionStatus:
        async with self.steps.taking():
            self.withdrawal = StepRecord(body=act.body, actor=act.actor.name, at=workflow.now())
            await self.steps.close(
                ProcessStatus.WITHDRAWN,
                "withdrawn",
                actor=act.actor.name,
                rules=["E-12.1"],
                data={"reason": act.body.reason, "during": self.state.step},
                end_run=False,  # the run sees the status and ends itself
            )
        return self.state

    @withdraw.validator
    def _check_withdraw(self, act: Act[Withdrawal]) -> None:
        require_partner(act.actor, self.inp.partner_id)
        self.steps.require_active()
        if self.withdrawal is not None:
            refuse(Refusal.ALREADY_DONE, "the proposal is being withdrawn")
        if self.state.stage not in BEFORE_RELEASE or self.state.release is not None:
            refuse(Refusal.WRONG_STAGE, "a proposal can be withdrawn only before its release")

    @workflow.update(name="extend_deadline")
    async def extend_deadline(self, act: Act[DeadlineExtension]) -> ExpansionStatus:
        async with self.steps.taking():
            await self.steps.extend(act)
        return self.state

    @extend_deadline.validator
    def _check_extend(self, act: Act[DeadlineExtension]) -> None:
        self.steps.check_extension(act)

    @workflow.update(name=OPENED_UPDATE)
    async def opened(self) -> None:
        """A start's Update (P-8): returns once the first step is open, or the process closed."""
        await self.steps.first_step()

    @workflow.query(name="status")
    def status(self) -> ExpansionStatus:
        return self.state

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _once(body: Body, done: Collection[Body], rule: str, what: str) -> None:
        refuse_decision(once(body, done, rule=rule, what=what), kind=Refusal.ALREADY_DONE)

    def _forbidden_found(self) -> bool:
        return any(r.review.forbidden for r in self.state.reviews.values())

    def _missing_risk_plans(self) -> list[str]:
        if self.state.risk is None:
            return []
        return [
            p
            for p in self.state.risk.required_plans
            if not (self.state.plans.get(p) or getattr(self.inp.proposal, p, None))
        ]

    def _missing_plans(self) -> list[str]:
        """E-2.3 plans the risk level requires, and E-5.1 approval requirements, still missing."""
        missing = self._missing_risk_plans()
        for name in approval_requirements(self.inp.proposal, self.state.plans):
            if name not in missing:
                missing.append(name)
        return missing

    def _tally(self, *, final: bool = False) -> VoteResult:
        return tally(
            {b: v.vote for b, v in self.state.votes.items()},
            restricted=bool(self.state.flags),
            risk_level=self.state.risk.level if self.state.risk else None,
            missing_requirements=approval_requirements(self.inp.proposal, self.state.plans),
            forbidden=forbidden_at_review({b: r.review for b, r in self.state.reviews.items()}),
            final=final,
        )

    async def _enter(self, stage: ExpansionStage) -> None:
        self.steps.ensure_active()
        self.state.stage = stage
        self.steps.clear()
        self.steps.show()
        await self.ledger.emit(f"stage:{stage.value}", "stage_changed", rules=["E-12.1"])

    async def _step(
        self,
        step: str,
        window: Deadline,
        *,
        actors: Callable[[], list[Awaiting]],
        done: Callable[[], bool],
        escalate: bool,
    ) -> bool:
        """Await one human step until its deadline, with a reminder (P-3). A missed review or
        vote is escalated to CGB, who may extend the deadline within the escalation window;
        a missed partner step is not. A withdrawal ends the wait at once."""

        def escalated(_: datetime) -> None:
            missing = [a.actor for a in actors()]
            self.state.escalations.append(Escalation(step=step, at=workflow.now(), missing=missing))

        return await self.steps.wait(
            Step(
                name=step,
                window=window,
                actors=actors,
                done=done,
                escalation=Escalate.EXTEND if escalate else None,
                on_escalate=escalated,
            )
        )

    async def _partner_step(
        self, step: str, action: str, done: Callable[[], bool], *, rules: list[str]
    ) -> None:
        """A partner step that is not done by its deadline expires the proposal (P-3)."""
        ok = await self._step(
            step,
            self.policy.partner_step,
            actors=lambda: [Awaiting(actor=self.partner, action=action)],
            done=done,
            escalate=False,
        )
        if not ok:
            await self.steps.close(ProcessStatus.EXPIRED, "expired", rules=["P-3", *rules])

    async def _decide(self, result: VoteResult) -> None:
        """Record the decision with its reasons and rules; a rejection ends the run."""
        self.state.decision = DecisionRecord(
            outcome=result.outcome,
            reasons=list(result.reasons),
            rules=list(result.rules),
            at=workflow.now(),
        )
        await self.ledger.emit(
            "decision",
            "decided",
            rules=list(result.rules),
            data={
                "outcome": result.outcome.value,
                "reasons": list(result.reasons),
                "approvals": result.approvals,
                "rejections": result.rejections,
            },
        )
        if result.outcome is not Outcome.APPROVED:
            await self.steps.close(ProcessStatus.REJECTED, "rejected", rules=list(result.rules))
