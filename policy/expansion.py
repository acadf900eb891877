"""Expansion-wide rules beyond submission: the category's shape (E-3.x) and the annual
stewardship tasks (E-13.1, M-10.1). The release's governance update is in policy.grants."""

from __future__ import annotations

from collections.abc import Sequence, Set

from policy.decisions import Decision, Finding
from policy.evidence import PartnerState
from policy.proposal import Proposal
from policy.vocabulary import Body, Category


def check_category(proposal: Proposal, partner_tier: str) -> Decision:
    """E-3.1 a capability expansion requests capabilities; E-3.2 a tier expansion changes the
    tier, and only it does; E-3.3 an integration expansion requests integrations; E-3.4 a
    governance expansion changes rules, not grants."""
    out: list[Finding] = []
    cat = proposal.category
    if cat is Category.CAPABILITY and not proposal.requested_capabilities:
        out.append(
            Finding(
                field="requested_capabilities",
                rule="E-3.1",
                message="a category A proposal requests at least one capability",
            )
        )
    if cat is Category.TIER and proposal.requested_tier == partner_tier:
        out.append(
            Finding(
                field="requested_tier",
                rule="E-3.2",
                message=f"a category B proposal changes the tier (the partner is {partner_tier})",
            )
        )
    if cat is not Category.TIER and proposal.requested_tier != partner_tier:
        out.append(
            Finding(
                field="requested_tier",
                rule="E-3.2",
                message=f"a tier change is a category B proposal (the partner is {partner_tier})",
            )
        )
    if cat is Category.INTEGRATION and not proposal.integrations:
        out.append(
            Finding(
                field="integrations",
                rule="E-3.3",
                message="a category C proposal requests at least one integration",
            )
        )
    if cat is Category.GOVERNANCE and (proposal.requested_capabilities or proposal.integrations):
        out.append(
            Finding(
                field="requested_capabilities",
                rule="E-3.4",
                message="a category D proposal changes rules; grants are category A or C",
            )
        )
    if cat is Category.GOVERNANCE and not proposal.policy_change:
        out.append(
            Finding(
                field="policy_change",
                rule="E-3.4",
                message="a category D proposal carries the policy change it makes",
            )
        )
    if cat is not Category.GOVERNANCE and proposal.policy_change:
        out.append(
            Finding(
                field="policy_change",
                rule="E-3.4",
                message="only a category D proposal changes the policy",
            )
        )
    if cat is Category.GOVERNANCE and proposal.removes:
        out.append(
            Finding(
                field="removes",
                rule="E-3.4",
                message="a category D proposal changes rules; it takes no grant away",
            )
        )
    return Decision(findings=tuple(out))


def legacy_governance_update(partner: PartnerState, proposal: Proposal) -> PartnerState:
    """The release's update as runs released before E-2.7's decision computed it (the requested
    tier and grants over an empty "before"). Kept only so those runs replay; a release today
    adds to what the partner holds (policy.grants.governance_update) and moves no tier."""
    removed = set(proposal.removes)
    capabilities = {*partner.capabilities, *(c.name for c in proposal.requested_capabilities)}
    capabilities |= {i.name for i in proposal.integrations}
    permissions = {*partner.permissions}
    for cap in proposal.requested_capabilities:
        permissions |= set(cap.permissions)
    for integ in proposal.integrations:
        permissions |= set(integ.permissions)
    return partner.model_copy(
        update={
            "tier": proposal.requested_tier,
            "capabilities": tuple(sorted(capabilities - removed)),
            "permissions": tuple(sorted(permissions - removed)),
        }
    )


# E-13.1 and M-10.1: the annual stewardship review's sections, signed off by all four bodies.
EXPANSION_STEWARDSHIP = (
    "review_expansion_outcomes",
    "update_expansion_rules",
    "update_governance",
    "update_compatibility_matrix",
)
MIGRATION_STEWARDSHIP = (
    "migration_review",
    "compatibility_update",
    "lifecycle_update",
    "sustainability_review",
)


def stewardship_signed_off(signed: Set[Body]) -> Decision:
    """M-10.1: the annual review is done when TSC, SCO, ERC and CGB have all signed it off."""
    missing = [b.value for b in Body if b not in signed]
    if not missing:
        return Decision()
    return Decision(
        findings=(
            Finding(field="signoffs", rule="M-10.1", message=f"awaiting {', '.join(missing)}"),
        )
    )


def breached(findings: Sequence[Finding]) -> bool:
    """E-12.1 stage 6 / E-11.1: a monitoring check breached the policy's thresholds — a rate or
    a permission use the partner's telemetry reported (no telemetry at all is not a breach of
    them: the platform's silence is not the partner's instability)."""
    return any(f.field != "telemetry" for f in findings)
