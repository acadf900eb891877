"""Remediation (M-9): the window by severity and what a missed window sets off."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from policy.decisions import Finding
from policy.document import PolicyContent
from policy.evidence import Violation
from policy.tiers import tier_below
from policy.vocabulary import MigrationType, Severity, Trigger


def as_violation(
    *,
    severity: Severity,
    opened_at: datetime,
    kind: str,
    origin: str | None,
    completed: bool,
    closed_at: datetime | None,
) -> Violation:
    """E-7.1 / E-7.2 evidence: every remediation is a violation from when it was found (M-9),
    resolved only once the remediation completed (not when it escalated or expired)."""
    return Violation(
        at=opened_at,
        severity=severity,
        kind=kind or "violation",
        resolved_at=closed_at if completed else None,
        origin=origin,
    )


def window(severity: Severity, policy: PolicyContent) -> timedelta:
    """M-9.2: minor 30 days, moderate 14 days. A severe violation is restricted at once (its
    window is 0): the partner then remediates within the ordinary partner-step period, and SCO
    reviews before access is restored."""
    if restrict_at_once(severity):
        return policy.partner_step.period
    return policy.remediation_windows[severity]


def deadline(severity: Severity, opened_at: datetime, policy: PolicyContent) -> datetime:
    """The window counts from the violation (M-9.2)."""
    return opened_at + window(severity, policy)


SEVERITY_ORDER = (Severity.MINOR, Severity.MODERATE, Severity.SEVERE)


def validation_severity(
    failures: Mapping[str, Sequence[Finding]], policy: PolicyContent
) -> Severity:
    """The severity of a failed validation's remediation (M-8.2 → M-9): what §8 forbids
    (unbounded permissions, ungoverned workflows, incompatible runtimes — findings of M-8.2)
    takes the severity the policy gives its check; anything else (an unsupported or unlisted
    version, a permission above the tier) is minor. The worst finding decides."""
    worst = Severity.MINOR
    for check, findings in failures.items():
        for finding in findings:
            severity = (
                policy.validation_severity.get(check, Severity.MODERATE)
                if finding.rule == "M-8.2"
                else Severity.MINOR
            )
            worst = max(worst, severity, key=SEVERITY_ORDER.index)
    return worst


def restrict_at_once(severity: Severity) -> bool:
    """M-9.2: a severe violation restricts the partner's access immediately..."""
    return severity is Severity.SEVERE


def needs_sco_review(severity: Severity) -> bool:
    """M-9.2: ...and opens a governance review by SCO before access is restored."""
    return severity is Severity.SEVERE


class Escalation(BaseModel):
    model_config = ConfigDict(frozen=True)

    keep_restricted: bool
    trigger: Trigger
    type_: MigrationType
    subtype: str
    target_tier: str | None
    rules: tuple[str, ...]


def forced_downgrade(
    trigger: Trigger, partner_tier: str, policy: PolicyContent, rules: tuple[str, ...]
) -> Escalation:
    """E-7.2 / M-2.3: a forced migration to the tier below (none below the lowest: the
    migration then reduces permissions instead)."""
    target = tier_below(partner_tier, policy)
    return Escalation(
        keep_restricted=trigger is Trigger.COMPLIANCE_VIOLATION,
        trigger=trigger,
        type_=MigrationType.TIER if target else MigrationType.PERMISSION,
        subtype="downgrade" if target else "reduction",
        target_tier=target,
        rules=rules,
    )


def missed_window(partner_tier: str, policy: PolicyContent) -> Escalation:
    """M-9.3 / E-7.2: access stays restricted and a forced tier-downgrade migration starts."""
    return forced_downgrade(
        Trigger.COMPLIANCE_VIOLATION, partner_tier, policy, ("M-9.3", "E-7.2", "M-2.3")
    )
