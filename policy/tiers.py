"""Tier lifecycle (E-7): upgrade eligibility from recorded evidence, downgrade triggers, new-tier
requirements, and the tier order."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from policy.decisions import Decision, Finding
from policy.document import PolicyContent, TierSpec
from policy.evidence import Telemetry, TierEvidence
from policy.proposal import Proposal, with_new_tier
from policy.triggers import FORCED_TRIGGERS
from policy.vocabulary import (
    RISK_ORDER,
    Category,
    MigrationType,
    RiskLevel,
    Severity,
    Trigger,
)


def evidence_lookback(policy: PolicyContent) -> timedelta:
    """E-7.1 / E-7.2: how far back a partner's evidence is read — the evidence window, or the
    violation lookback where that is longer."""
    return max(policy.tier_rules.evidence_window, policy.tier_rules.violation_lookback)


def _recent(reports: Sequence[Telemetry], now: datetime, policy: PolicyContent) -> list[Telemetry]:
    since = now - policy.tier_rules.evidence_window
    return [r for r in reports if r.period_end > since and r.period_end <= now]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def upgrade_evidence(evidence: TierEvidence, *, now: datetime, policy: PolicyContent) -> Decision:
    """E-7.1 on the recorded evidence alone — reliable workflows, clean compliance, minimal
    permissions — each failure named. Judged at submission, before the risk is known."""
    rules = policy.tier_rules
    out: list[Finding] = []
    recent = _recent(evidence.telemetry, now, policy)
    success = _mean([r.workflow_success_rate for r in recent])
    if len(recent) < rules.min_reports or success < rules.upgrade_min_success_rate:
        out.append(
            Finding(
                field="workflows_reliable",
                rule="E-7.1",
                message=f"{len(recent)} reports in the window (need {rules.min_reports}), "
                f"mean workflow success {success:.3f} (need {rules.upgrade_min_success_rate})",
            )
        )
    if evidence.forced_downgrade is not None:
        out.append(
            Finding(
                field="compliance_clean",
                rule="E-7.1",
                message=f"a forced downgrade ({evidence.forced_downgrade}) is under way (E-7.2)",
            )
        )
    since = now - rules.violation_lookback
    unclean = [v for v in evidence.violations if v.resolved_at is None or v.at > since]
    if unclean:
        out.append(
            Finding(
                field="compliance_clean",
                rule="E-7.1",
                message=f"{len(unclean)} open or recent violation(s) "
                f"(within {rules.violation_lookback.days} days)",
            )
        )
    used = {p for r in recent for p, calls in r.permission_usage.items() if calls > 0}
    unused = sorted(set(evidence.granted_permissions) - used)
    if len(unused) > rules.max_unused_permissions:
        out.append(
            Finding(
                field="permissions_minimal",
                rule="E-7.1",
                message=f"granted but unused: {', '.join(unused)}",
            )
        )
    return Decision(findings=tuple(out))


def upgrade_eligibility(
    evidence: TierEvidence,
    *,
    risk_level: RiskLevel | None,
    now: datetime,
    policy: PolicyContent,
) -> Decision:
    """E-7.1 in full: the evidence, and a low risk (judged once the risk is assessed)."""
    limit = policy.tier_rules.upgrade_max_risk
    risk: tuple[Finding, ...] = ()
    if risk_level is None or RISK_ORDER.index(risk_level) > RISK_ORDER.index(limit):
        risk = (
            Finding(
                field="risk_low",
                rule="E-7.1",
                message=f"risk is {risk_level.value if risk_level else 'unassessed'}; "
                f"an upgrade needs {limit.value}",
            ),
        )
    return Decision.merge(
        upgrade_evidence(evidence, now=now, policy=policy), Decision(findings=risk)
    )


# What a telemetry-driven downgrade is forced by (M-2.3): misuse is a security matter, failing
# workflows and API errors are instability. Compliance violations escalate through their own
# remediation's window instead (M-9.3), so they never start a second downgrade here.
TRIGGER_OF_FINDING = {
    "permission_misuse": Trigger.SECURITY_VIOLATION,
    "workflow_failures": Trigger.PARTNER_INSTABILITY,
    "partner_instability": Trigger.PARTNER_INSTABILITY,
}


def telemetry_downgrade(
    evidence: TierEvidence, *, now: datetime, policy: PolicyContent
) -> tuple[Trigger, Decision] | None:
    """E-7.2 on newly reported telemetry: the forced trigger and the findings, or None."""
    found = downgrade_triggers(evidence, now=now, policy=policy)
    findings = tuple(f for f in found.findings if f.field in TRIGGER_OF_FINDING)
    if not findings:
        return None
    triggers = {TRIGGER_OF_FINDING[f.field] for f in findings}
    trigger = (
        Trigger.SECURITY_VIOLATION
        if Trigger.SECURITY_VIOLATION in triggers
        else Trigger.PARTNER_INSTABILITY
    )
    return trigger, Decision(findings=findings)


def downgrade_triggers(evidence: TierEvidence, *, now: datetime, policy: PolicyContent) -> Decision:
    """E-7.2: compliance violations, workflow failures, permission misuse, instability — each a
    finding that starts a forced tier-downgrade migration (M-2.3)."""
    rules = policy.tier_rules
    telemetry, violations = evidence.telemetry, evidence.violations
    granted_permissions = evidence.granted_permissions
    out: list[Finding] = []
    open_serious = [
        v for v in violations if v.resolved_at is None and v.severity is not Severity.MINOR
    ]
    if open_serious:
        out.append(
            Finding(
                field="compliance_violations",
                rule="E-7.2",
                message=f"{len(open_serious)} open moderate or severe violation(s)",
            )
        )
    recent = _recent(telemetry, now, policy)
    if recent:
        success = _mean([r.workflow_success_rate for r in recent])
        if success < rules.downgrade_success_rate_floor:
            out.append(
                Finding(
                    field="workflow_failures",
                    rule="E-7.2",
                    message=f"mean workflow success {success:.3f} below "
                    f"{rules.downgrade_success_rate_floor}",
                )
            )
        errors = _mean([r.api_error_rate for r in recent])
        if errors > rules.downgrade_api_error_ceiling:
            out.append(
                Finding(
                    field="partner_instability",
                    rule="E-7.2",
                    message=f"mean API error rate {errors:.3f} above "
                    f"{rules.downgrade_api_error_ceiling}",
                )
            )
    misused = sorted(
        {
            p
            for r in recent
            for p, calls in r.permission_usage.items()
            if calls > 0 and p not in granted_permissions
        }
    )
    if misused:
        out.append(
            Finding(
                field="permission_misuse",
                rule="E-7.2",
                message=f"calls on permissions never granted: {', '.join(misused)}",
            )
        )
    return Decision(findings=tuple(out))


def new_tier_requirements(
    *,
    approved: bool,
    compatibility_plan: str | None,
    lifecycle_plan: str | None,
    sustainability_reviewed: bool,
) -> Decision:
    """E-7.3: a new tier needs governance approval, a compatibility plan, a lifecycle plan and a
    sustainability review."""
    out = []
    for field, ok in (
        ("governance_approval", approved),
        ("compatibility_plan", bool(compatibility_plan and compatibility_plan.strip())),
        ("lifecycle_plan", bool(lifecycle_plan and lifecycle_plan.strip())),
        ("sustainability_review", sustainability_reviewed),
    ):
        if not ok:
            out.append(Finding(field=field, rule="E-7.3", message="required for a new tier"))
    return Decision(findings=tuple(out))


def below(tier: str, than: str, policy: PolicyContent) -> bool:
    """Whether `tier` ranks below `than` in the catalogue (both known)."""
    names = policy.tier_names
    return tier in names and than in names and names.index(tier) < names.index(than)


def tier_below(tier: str, policy: PolicyContent) -> str | None:
    names = policy.tier_names
    i = names.index(tier)
    return names[i - 1] if i > 0 else None


def tier_above(tier: str, policy: PolicyContent) -> str | None:
    names = policy.tier_names
    i = names.index(tier)
    return names[i + 1] if i + 1 < len(names) else None


def is_upgrade(proposal: Proposal, partner_tier: str, policy: PolicyContent) -> bool:
    """A category B proposal for a tier above the partner's (E-7.1 applies) — a new tier too,
    ranked where it would land (E-7.3)."""
    names = policy.tier_names
    if proposal.new_tier is not None and proposal.new_tier.after in names:
        names = with_new_tier(policy, proposal.new_tier).tier_names
    return (
        proposal.category is Category.TIER
        and proposal.requested_tier in names
        and partner_tier in names
        and names.index(proposal.requested_tier) > names.index(partner_tier)
    )


def moves_tier(proposal: Proposal, policy: PolicyContent) -> bool:
    """E-3.2: a category B proposal moves the tier — to a known tier, or a new one (E-7.3), in
    the catalogue since its release though not in the policy it was judged on."""
    known = proposal.requested_tier in policy.tier_names or proposal.new_tier is not None
    return proposal.category is Category.TIER and known


class FollowUp(BaseModel):
    """The migration a released proposal starts (E-2.1a)."""

    model_config = ConfigDict(frozen=True)

    trigger: Trigger
    type_: MigrationType
    subtype: str
    with_tier: bool  # a tier migration: the tier, its grants and removals move at its rollout


def follow_up(proposal: Proposal, partner_tier: str, policy: PolicyContent) -> FollowUp:
    """E-2.1a: a tier change starts a tier migration (up or down, E-7.1 / E-7.2); an applicable
    migration plan otherwise starts a permission migration — a restructuring when it removes."""
    if moves_tier(proposal, policy):
        up = is_upgrade(proposal, partner_tier, policy)
        return FollowUp(
            trigger=Trigger.TIER_UPGRADE if up else Trigger.TIER_DOWNGRADE,
            type_=MigrationType.TIER,
            subtype="upgrade" if up else "downgrade",
            with_tier=True,
        )
    return FollowUp(
        trigger=Trigger.CAPABILITY_EXPANSION,
        type_=MigrationType.PERMISSION,
        subtype="restructuring" if proposal.removes else "governed_expansion",
        with_tier=False,
    )


def tier_move(
    *,
    current: str,
    target: str,
    trigger: Trigger,
    subtype: str,
    governed: bool,
    policy: PolicyContent,
    evidence: Decision | None = None,
) -> Decision:
    """Whether a tier migration may move the partner from `current` to `target` (E-7.1, E-7.2,
    M-2.2, M-2.3): up only as the upgrade an approved category-B release started from this very
    tier (`governed`), with E-7.1's `evidence` still holding; down only by a downgrade — the
    partner's own (M-2.2) or a forced one (M-2.3). Judged when the migration is requested and
    again when it takes effect: the tier may have moved meanwhile."""
    names = policy.tier_names
    if target not in names:
        return _refused(
            "target.tier",
            "E-7.3",
            f"unknown tier {target!r}; the catalogue is {', '.join(names)}",
        )
    if current not in names or target == current:
        return _refused(
            "target.tier",
            "E-7.2",
            f"the partner is on {current} already: the migration would not move its tier",
        )
    rises = names.index(target) > names.index(current)
    if rises:
        if trigger is Trigger.TIER_UPGRADE and subtype == "upgrade" and governed:
            return evidence or Decision()
        return _refused(
            "target.tier",
            "E-7.1",
            f"{target} is above {current}: a tier rises only by the migration an approved "
            "category B proposal's release starts",
        )
    if subtype == "downgrade" and trigger in DOWNGRADE_TRIGGERS:
        return Decision()
    return _refused(
        "target.tier",
        "E-7.2",
        f"{target} is below {current}: a tier falls only by a downgrade (the partner's own "
        "tier_downgrade, or a forced one)",
    )


# Who may move a tier down (M-2.2 the partner's own downgrade; M-2.3 the forced triggers).
DOWNGRADE_TRIGGERS = frozenset({Trigger.TIER_DOWNGRADE}) | FORCED_TRIGGERS


def _refused(field: str, rule: str, message: str) -> Decision:
    return Decision(findings=(Finding(field=field, rule=rule, message=message),))


def governed_upgrade(
    *,
    same_partner: bool,
    category: Category,
    approved: bool,
    released: bool,
    started: bool,
    from_tier: bool,
) -> bool:
    """E-7.1 (Decision): a tier rises only by the migration an approved category-B proposal of
    the same partner started at its release — and only from the tier that proposal was judged
    on (`from_tier`): after a downgrade, a pending upgrade does not raise the partner again."""
    return (
        same_partner
        and category is Category.TIER
        and approved
        and released
        and started
        and from_tier
    )


def upgrade_still_eligible(
    evidence: TierEvidence, *, now: datetime, policy: PolicyContent, rising: str
) -> Decision:
    """E-7.1 when the tier rises (the rollout may come months after the vote): workflows still
    reliable and compliance still clean on the recorded evidence — no forced downgrade under
    way, no violation but a remediation the rising migration's own validation opened
    (`rising`, its workflow id: a fixed validation does not hold the upgrade back).
    Permissions are not judged again: the grants the new tier was approved for come with it
    and cannot have been used yet."""
    own = tuple(v for v in evidence.violations if v.origin != rising)
    evidence = evidence.model_copy(update={"violations": own})
    found = upgrade_evidence(evidence, now=now, policy=policy)
    return Decision(findings=tuple(f for f in found.findings if f.field != "permissions_minimal"))


def same_new_tier(judged: TierSpec | None, in_catalogue: TierSpec | None) -> Decision:
    """E-7.3: a new tier's upgrade lands on the tier its proposal defined — if the catalogue's
    tier of that name is another (a second proposal of the same name released first), the
    partner does not rise onto a tier nobody judged for it."""
    if judged is None or judged == in_catalogue:
        return Decision()
    return _refused(
        "target.tier",
        "E-7.3",
        f"the catalogue's {judged.name} is not the tier this proposal defined",
    )
