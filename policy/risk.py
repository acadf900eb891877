"""Risk assessment (E-2.3, E-11.1): a score per category from the proposal and the reviews, a
level, and the plans that level requires before the vote."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from pydantic import BaseModel, ConfigDict

from policy.decisions import Decision, Finding
from policy.document import PolicyContent
from policy.proposal import Proposal, check_submission
from policy.review import CRITERIA, Review
from policy.vocabulary import RISK_ORDER, Body, Category, RiskCategory, RiskLevel

RULES = ["E-2.3", "E-11.1"]


class RiskAssessment(BaseModel):
    model_config = ConfigDict(frozen=True)

    scores: dict[RiskCategory, int]
    total: int
    level: RiskLevel
    required_plans: tuple[str, ...]
    missing_plans: tuple[str, ...]
    rules: tuple[str, ...] = tuple(RULES)


def level_for(total: int, policy: PolicyContent) -> RiskLevel:
    level = RiskLevel.LOW
    for candidate in RISK_ORDER:
        if total >= policy.risk.thresholds[candidate]:
            level = candidate
    return level


def assess(
    proposal: Proposal,
    reviews: Mapping[Body, Review],
    policy: PolicyContent,
    *,
    plans: Mapping[str, str | None] | None = None,
) -> RiskAssessment:
    """Score the four categories (E-11.1): each review verdict counts towards its criterion's
    category; restricted items add security risk, a breaking change technical risk, a tier
    change or removals ecosystem risk. `plans` holds plans supplied after submission."""
    rp = policy.risk
    raw = dict.fromkeys(RiskCategory, 0)
    for review in reviews.values():
        for criterion, verdict in review.criteria.items():
            if criterion in CRITERIA:
                raw[CRITERIA[criterion][2]] += rp.verdict_points[verdict]
    raw[RiskCategory.SECURITY] += rp.restricted_item_points * len(
        check_submission(proposal, policy).flags
    )
    if proposal.breaking_change:
        raw[RiskCategory.TECHNICAL] += rp.breaking_change_points
    if proposal.category is Category.TIER:
        raw[RiskCategory.ECOSYSTEM] += rp.tier_change_points
    raw[RiskCategory.ECOSYSTEM] += rp.removal_points * len(proposal.removes)
    scores = {cat: raw[cat] * rp.category_weights[cat] for cat in RiskCategory}
    total = sum(scores.values())
    level = level_for(total, policy)
    required = rp.plans_required[level]
    supplied = {name: getattr(proposal, name, None) for name in required}
    supplied.update({k: v for k, v in (plans or {}).items() if v})
    missing = tuple(p for p in required if not (supplied.get(p) or "").strip())
    return RiskAssessment(
        scores=scores, total=total, level=level, required_plans=required, missing_plans=missing
    )


def plans_decision(assessment: RiskAssessment) -> Decision:
    """E-2.3: the vote waits until the plans the level requires are in."""
    return Decision(
        findings=tuple(
            Finding(field=p, rule="E-2.3", message=f"required at {assessment.level.value} risk")
            for p in assessment.missing_plans
        )
    )


def plans_given(names: Collection[str]) -> Decision:
    """E-2.3: a plans submission gives at least one plan."""
    if names:
        return Decision()
    return Decision(findings=(Finding(field="plans", rule="E-2.3", message="no plan given"),))
