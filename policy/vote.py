"""The approval vote (E-2.4) and what may still stop an approval (E-5.1, E-5.2, E-6.2, E-10.2).

approved ⇔ at least 3 of 4 bodies approve *and* CGB approves; a CGB rejection rejects whatever
the count; 2-2 is no majority. A proposal with a restricted item also needs SCO's approval and a
risk level no higher than medium. The outcome is decided as soon as no outstanding vote could
change it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import product

from pydantic import BaseModel, ConfigDict

from policy.decisions import Decision, Finding
from policy.proposal import Proposal
from policy.tiers import new_tier_requirements
from policy.vocabulary import RISK_ORDER, Body, Outcome, RiskLevel, VoteDecision

# E-5.1: what a proposal must carry to be approved (the migration plan when applicable).
APPROVAL_REQUIREMENTS = (
    "governance_alignment",
    "compatibility_impact",
    "lifecycle_plan",
    "risk_mitigation",
)


class Vote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: VoteDecision
    rationale: str = ""
    long_term_harm: bool = False  # E-10.2: CGB rejects a short-term expansion harming stability


class VoteResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    approvals: int
    rejections: int
    reasons: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()

    @classmethod
    def rejected(cls, reasons: Iterable[str], rules: Iterable[str]) -> VoteResult:
        """Rejected before the votes count (E-5.2 forbidden at review, E-7.1 ineligible)."""
        return cls(
            outcome=Outcome.REJECTED,
            approvals=0,
            rejections=0,
            reasons=tuple(reasons),
            rules=tuple(rules),
        )


def check_vote(body: Body, vote: Vote) -> Decision:
    """E-10.2: only CGB rejects a short-term expansion for harming long-term stability."""
    if vote.long_term_harm and body is not Body.CGB:
        return Decision(
            findings=(
                Finding(
                    field="long_term_harm",
                    rule="E-10.2",
                    message="only CGB rejects on long-term stability",
                ),
            )
        )
    return Decision()


def with_new_tier(
    result: VoteResult, proposal: Proposal, *, sustainability_reviewed: bool
) -> VoteResult:
    """E-7.3: an approving vote is a new tier's governance approval; the tier also needs a
    compatibility plan, a lifecycle plan and a sustainability review (CGB's `sustainability`
    criterion passed) — one missing, the proposal is rejected naming it."""
    if result.outcome is not Outcome.APPROVED or proposal.new_tier is None:
        return result
    needs = new_tier_requirements(
        approved=True,
        compatibility_plan=proposal.new_tier.compatibility_plan,
        lifecycle_plan=proposal.lifecycle_plan,
        sustainability_reviewed=sustainability_reviewed,
    )
    if needs.allowed:
        return result
    return VoteResult(
        outcome=Outcome.REJECTED,
        approvals=result.approvals,
        rejections=result.rejections,
        reasons=tuple(f"{f.field}: {f.message}" for f in needs.findings),
        rules=("E-7.3",),
    )


def approval_requirements(proposal: Proposal, plans: Mapping[str, str | None]) -> list[str]:
    """E-5.1: the missing approval requirements (plans supplied later count)."""
    needed = list(APPROVAL_REQUIREMENTS)
    if proposal.migration_plan_required:
        needed.append("migration_plan")
    missing = []
    for name in needed:
        value = plans.get(name) or getattr(proposal, name, None)
        if not (isinstance(value, str) and value.strip()):
            missing.append(name)
    return missing


def _final(
    votes: Mapping[Body, Vote | None],
    *,
    restricted: bool,
    risk_level: RiskLevel | None,
    missing_requirements: list[str],
    forbidden: Decision,
) -> VoteResult:
    """The outcome once every vote is in (a missing vote does not approve)."""
    approvals = sum(1 for v in votes.values() if v and v.decision is VoteDecision.APPROVE)
    rejections = sum(1 for v in votes.values() if v and v.decision is VoteDecision.REJECT)
    cgb = votes.get(Body.CGB)
    reasons: list[str] = []
    rules: list[str] = []

    def reject(reason: str, *rule: str) -> None:
        reasons.append(reason)
        rules.extend(rule)

    if not forbidden.allowed:
        reject("forbidden without exception: no vote can approve it", *forbidden.rules)
    if missing_requirements:
        reject(f"required for approval: {', '.join(missing_requirements)}", "E-5.1")
    if cgb is not None and cgb.decision is VoteDecision.REJECT:
        if cgb.long_term_harm:
            reject("CGB rejected: short-term expansion harming long-term stability", "E-10.2")
        reject("CGB rejected, with final authority", "E-2.4")
    elif cgb is None or cgb.decision is not VoteDecision.APPROVE:
        reject("CGB has not approved, and CGB has final authority", "E-2.4")
    if approvals < 3:
        tie = " (a 2-2 tie is no majority)" if approvals == 2 and rejections == 2 else ""
        reject(f"{approvals} of 4 bodies approved; a majority is 3{tie}", "E-2.4")
    if restricted:
        sco = votes.get(Body.SCO)
        if sco is None or sco.decision is not VoteDecision.APPROVE:
            reject("a restricted item needs SCO's approval", "E-6.2")
        if risk_level is None or RISK_ORDER.index(risk_level) > RISK_ORDER.index(RiskLevel.MEDIUM):
            level = risk_level.value if risk_level else "unassessed"
            reject(f"a restricted item needs risk no higher than medium (is {level})", "E-6.2")
    if reasons:
        return VoteResult(
            outcome=Outcome.REJECTED,
            approvals=approvals,
            rejections=rejections,
            reasons=tuple(reasons),
            rules=tuple(dict.fromkeys(rules)),
        )
    rules = ["E-2.4"] + (["E-6.2"] if restricted else [])
    return VoteResult(
        outcome=Outcome.APPROVED,
        approvals=approvals,
        rejections=rejections,
        reasons=(f"{approvals} of 4 approved, CGB among them",),
        rules=tuple(rules),
    )


def tally(
    votes: Mapping[Body, Vote],
    *,
    restricted: bool,
    risk_level: RiskLevel | None,
    missing_requirements: list[str] | None = None,
    forbidden: Decision | None = None,
    final: bool = False,
) -> VoteResult:
    """E-2.4. With `final` (the vote deadline passed) outstanding votes count as not approving;
    otherwise the result is pending until no outstanding vote could change it."""
    kwargs = {
        "restricted": restricted,
        "risk_level": risk_level,
        "missing_requirements": missing_requirements or [],
        "forbidden": forbidden or Decision(),
    }
    if final:
        return _final({b: votes.get(b) for b in Body}, **kwargs)  # type: ignore[arg-type]
    outstanding = [b for b in Body if b not in votes]
    choices = [Vote(decision=d) for d in VoteDecision]
    outcomes = []
    for filled in product(choices, repeat=len(outstanding)):
        complete: dict[Body, Vote | None] = {**votes, **dict(zip(outstanding, filled, strict=True))}
        outcomes.append(_final(complete, **kwargs))  # type: ignore[arg-type]
    if len({o.outcome for o in outcomes}) > 1:
        counted = sum(1 for v in votes.values() if v.decision is VoteDecision.APPROVE)
        return VoteResult(
            outcome=Outcome.PENDING, approvals=counted, rejections=len(votes) - counted
        )
    # Decided: explain it as the actual votes do (outstanding ones counted as not approving).
    return _final({b: votes.get(b) for b in Body}, **kwargs)  # type: ignore[arg-type]
