"""Reviews by the four bodies (E-2.2, E-4.x): which criteria each body judges, whether a review
is complete, and what a review can find that no vote may approve (E-5.2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from policy.decisions import Decision, Finding
from policy.vocabulary import Body, ForbiddenFinding, RiskCategory, Verdict, VoteDecision

Notes = Annotated[str, StringConstraints(max_length=20_000)]

# E-4.1 to E-4.4: the criteria each body reviews, the rule that lists it, and the risk category
# (E-11.1) a concern or failure on it counts towards.
CRITERIA: dict[str, tuple[Body, str, RiskCategory]] = {
    "architecture_alignment": (Body.TSC, "E-4.1", RiskCategory.TECHNICAL),
    "performance_impact": (Body.TSC, "E-4.1", RiskCategory.TECHNICAL),
    "compatibility_impact": (Body.TSC, "E-4.1", RiskCategory.TECHNICAL),
    "maintainability": (Body.TSC, "E-4.1", RiskCategory.TECHNICAL),
    "permission_boundaries": (Body.SCO, "E-4.2", RiskCategory.SECURITY),
    "data_access_rules": (Body.SCO, "E-4.2", RiskCategory.SECURITY),
    "sandbox_integrity": (Body.SCO, "E-4.2", RiskCategory.SECURITY),
    "data_protection": (Body.SCO, "E-4.3", RiskCategory.COMPLIANCE),
    "retention_rules": (Body.SCO, "E-4.3", RiskCategory.COMPLIANCE),
    "deletion_rules": (Body.SCO, "E-4.3", RiskCategory.COMPLIANCE),
    "auditability": (Body.SCO, "E-4.3", RiskCategory.COMPLIANCE),
    "workflow_impact": (Body.ERC, "E-4.4", RiskCategory.ECOSYSTEM),
    "developer_impact": (Body.CGB, "E-4.4", RiskCategory.ECOSYSTEM),
    "partner_impact": (Body.CGB, "E-4.4", RiskCategory.ECOSYSTEM),
    # E-10.1: CGB's sustainability review (ecosystem health, long-term viability).
    "sustainability": (Body.CGB, "E-10.1", RiskCategory.ECOSYSTEM),
}

# What each criterion asks, as a reviewer reads it beside the verdict (E-4.1 to E-4.4, E-10.1).
MEANING: dict[str, str] = {
    "architecture_alignment": "Does it fit KWANUS OS's architecture and its governed APIs?",
    "performance_impact": "What does it cost the platform and other partners at load?",
    "compatibility_impact": "Does it keep every supported OS, API and runtime version working?",
    "maintainability": "Can it be kept working and upgraded over its lifecycle?",
    "permission_boundaries": "Are its permissions bounded, scoped and no wider than it needs?",
    "data_access_rules": "Does it read and write only the data its permissions allow?",
    "sandbox_integrity": "Does it stay inside the partner sandbox, with no way around it?",
    "data_protection": "Is personal and merchant data protected in transit and at rest?",
    "retention_rules": "Does it keep data no longer than the retention rules allow?",
    "deletion_rules": "Is data deleted on request and at the end of its retention?",
    "auditability": "Can every action it takes be traced in the audit log?",
    "workflow_impact": "How does it change the workflows partners and merchants run?",
    "developer_impact": "What does it ask of developers building on the platform?",
    "partner_impact": "How does it affect the other partners of the ecosystem?",
    "sustainability": "Is it good for the ecosystem's health and viable in the long term?",
}


def criteria_of(body: Body) -> tuple[str, ...]:
    return tuple(name for name, (owner, _, _) in CRITERIA.items() if owner is body)


class Review(BaseModel):
    """One body's review: a verdict per criterion of that body, a recommendation, notes, and
    any finding that is forbidden without exception."""

    model_config = ConfigDict(extra="forbid")

    criteria: dict[str, Verdict]
    recommendation: VoteDecision
    notes: Notes = ""
    confidential_notes: Notes = Field(
        default="", description="For the governance bodies only: never shown to the partner."
    )
    forbidden: list[ForbiddenFinding] = Field(
        default_factory=list, description="E-5.2 findings: the proposal ends rejected."
    )


def check_review(body: Body, review: Review) -> Decision:
    """E-4.x: a review gives a verdict on every criterion of its body and on no other."""
    findings = []
    own = criteria_of(body)
    for name in own:
        if name not in review.criteria:
            rule = CRITERIA[name][1]
            findings.append(
                Finding(field=f"criteria.{name}", rule=rule, message=f"{body.value} must judge it")
            )
    for name in review.criteria:
        if name not in own:
            owner = CRITERIA[name][0].value if name in CRITERIA else None
            message = f"reviewed by {owner}, not {body.value}" if owner else "unknown criterion"
            rule = CRITERIA[name][1] if name in CRITERIA else "E-4.4"
            findings.append(Finding(field=f"criteria.{name}", rule=rule, message=message))
    return Decision(findings=tuple(findings))


def check_first_review(body: Body, reviews: Mapping[Body, Review]) -> Decision:
    """E-2.2: each body reviews once."""
    if body not in reviews:
        return Decision()
    return Decision(
        findings=(Finding(field="body", rule="E-2.2", message=f"{body.value} has reviewed"),)
    )


def forbidden_at_review(reviews: Mapping[Body, Review]) -> Decision:
    """E-5.2: what a review found that no vote, not even CGB's, can approve."""
    return Decision(
        findings=tuple(
            Finding(
                field=f"reviews.{body.value}.forbidden",
                rule="E-5.2",
                message=f"{body.value} found {item.value.replace('_', ' ')}: forbidden",
            )
            for body, review in reviews.items()
            for item in review.forbidden
        )
    )


def reviews_complete(reviews: Mapping[Body, Review]) -> bool:
    """E-2.2: the initial review is done when all four bodies have reviewed."""
    return set(reviews) == set(Body)
