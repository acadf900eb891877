"""Checks on a partner's registered profile."""

from __future__ import annotations

from collections.abc import Sequence

from policy.decisions import Decision, Finding
from policy.document import PolicyContent
from policy.grants import (
    Grant,
    action_findings,
    check_requested,
    requested_once,
    unbounded_findings,
)


def check_profile(
    *, tier: str, permissions: list[str], grants: Sequence[Grant], policy: PolicyContent
) -> Decision:
    """A partner is registered on a catalogue tier (E-7.3: tiers come from governance), never
    with an unbounded permission (E-5.2), and with grants — and permissions — its tier's
    catalogue allows (E-7.4), each grant what its permissions say (E-6.1, E-8.1) and of no
    forbidden kind (E-6.3, E-8.3)."""
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
    findings += unbounded_findings("permissions", permissions)
    if spec is not None:
        findings += action_findings("permissions", permissions, spec)
    requested = [(f"grants.{i}", grant) for i, grant in enumerate(grants)]
    findings += [*check_requested(requested, policy, spec).findings, *requested_once(requested)]
    return Decision(findings=tuple(findings))
