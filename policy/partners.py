"""Checks on a partner's registered profile."""

from __future__ import annotations

from collections.abc import Sequence

from policy.decisions import Decision, Finding
from policy.document import PolicyContent
from policy.grants import Grant, GrantType, check_grants, classify_grant
from policy.proposal import unbounded_findings
from policy.types import action_of
from policy.vocabulary import Classification


def check_profile(
    *, tier: str, permissions: list[str], grants: Sequence[Grant], policy: PolicyContent
) -> Decision:
    """A partner is registered on a catalogue tier (E-7.3: tiers come from governance), never
    with an unbounded permission (E-5.2), and with grants that are what their permissions say
    (E-6.1, E-8.1) and that its tier's catalogue allows (E-7.4)."""
    findings: list[Finding] = []
    spec = policy.tier(tier)
    if spec is None:
        findings.append(
            Finding(
                field="tier",
                rule="E-7.3",
                message=f"unknown tier {tier!r}; the catalogue is {', '.join(policy.tier_names)}",
            )
        )
    findings.extend(unbounded_findings("permissions", permissions))
    if spec is not None:  # E-7.4: registered permissions stay within the tier's actions too
        findings += [
            Finding(
                field=f"permissions.{i}",
                rule="E-7.4",
                message=f"tier {spec.name} allows the actions "
                f"{', '.join(sorted(spec.permission_actions))}, not {action_of(perm)!r}",
            )
            for i, perm in enumerate(permissions)
            if "*" not in perm and action_of(perm) not in spec.permission_actions
        ]
    classes = [classify_grant(g, policy) for g in grants]
    for i, (grant, cls) in enumerate(zip(grants, classes, strict=True)):
        findings.extend(unbounded_findings(f"grants.{i}.permissions", grant.permissions))
        if cls is Classification.FORBIDDEN:
            rule = "E-6.3" if grant.type is GrantType.CAPABILITY else "E-8.3"
            findings.append(
                Finding(field=f"grants.{i}.kind", rule=rule, message=f"{grant.kind} is forbidden")
            )
    findings += check_grants([f"grants.{i}" for i in range(len(grants))], grants, classes, spec)
    return Decision(findings=tuple(findings))
