"""Remediation (M-9): the window by severity and what a missed window sets off."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from policy.document import PolicyContent
from policy.tiers import tier_below
from policy.vocabulary import MigrationType, Severity, Trigger


def deadline(severity: Severity, opened_at: datetime, policy: PolicyContent) -> datetime:
    """M-9.2: minor 30 days, moderate 14 days, severe at once (from the violation)."""
    return opened_at + policy.remediation_windows[severity]


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


def missed_window(partner_tier: str, policy: PolicyContent) -> Escalation:
    """M-9.3 / E-7.2: access stays restricted and a forced tier-downgrade migration starts, to
    the tier below (none below the lowest: the migration then reduces permissions instead)."""
    target = tier_below(partner_tier, policy)
    return Escalation(
        keep_restricted=True,
        trigger=Trigger.COMPLIANCE_VIOLATION,
        type_=MigrationType.TIER if target else MigrationType.PERMISSION,
        subtype="downgrade" if target else "reduction",
        target_tier=target,
        rules=("M-9.3", "E-7.2", "M-2.3"),
    )
