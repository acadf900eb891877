"""Checks on a partner's registered profile."""

from __future__ import annotations

from policy.decisions import Decision, Finding
from policy.document import PolicyContent
from policy.proposal import unbounded_findings


def check_profile(*, tier: str, permissions: list[str], policy: PolicyContent) -> Decision:
    """A partner is registered on a catalogue tier (E-7.3: tiers come from governance) and never
    with an unbounded permission (E-5.2)."""
    findings: list[Finding] = []
    if tier not in policy.tier_names:
        findings.append(
            Finding(
                field="tier",
                rule="E-7.3",
                message=f"unknown tier {tier!r}; the catalogue is {', '.join(policy.tier_names)}",
            )
        )
    findings.extend(unbounded_findings("permissions", permissions))
    return Decision(findings=tuple(findings))
