"""The versioned policy document: every duration, catalogue and table the rules consult.

Shipped defaults live here; the store keeps later versions. A workflow receives the version in
force when it starts and keeps it (P-5), so the document travels inside the workflow input.
An update may tighten the spec's hard floors, never loosen them (`check_floors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from policy.decisions import Decision, Finding
from policy.types import Duration
from policy.vocabulary import (
    RISK_ORDER,
    VALIDATION_CHECKS,
    CapabilityKind,
    Classification,
    IntegrationKind,
    RiskCategory,
    RiskLevel,
    Severity,
    TriggerClass,
    Verdict,
)

TierName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,31}$")]
DAY = timedelta(days=1)


class Deadline(BaseModel):
    """A human step's window (P-3): due `period` after it opens, reminded `reminder` after."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    period: Duration
    reminder: Duration


class TierSpec(BaseModel):
    """One tier of the catalogue (E-7): what a partner on it may hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: TierName
    capability_kinds: frozenset[CapabilityKind]
    integration_kinds: frozenset[IntegrationKind]
    permission_actions: frozenset[str] = Field(
        description="Actions (the part after ':') a permission on this tier may carry."
    )


def _tier(name: str, caps: set[str], integ: set[str], actions: set[str]) -> TierSpec:
    return TierSpec(
        name=name,
        capability_kinds=frozenset(CapabilityKind(c) for c in caps),
        integration_kinds=frozenset(IntegrationKind(i) for i in integ),
        permission_actions=frozenset(actions),
    )


_BASE_CAPS = {"read_only", "ui_component"}
_BASE_INTEG = {"api", "extension"}
DEFAULT_TIERS: tuple[TierSpec, ...] = (
    _tier("community", _BASE_CAPS, _BASE_INTEG, {"read"}),
    _tier(
        "verified",
        _BASE_CAPS | {"workflow_trigger", "write"},
        _BASE_INTEG | {"workflow", "write"},
        {"read", "write"},
    ),
    _tier(
        "premier",
        _BASE_CAPS | {"workflow_trigger", "write", "advanced_permission"},
        _BASE_INTEG | {"workflow", "write", "advanced_permission"},
        {"read", "write", "admin"},
    ),
    _tier(
        "strategic",
        _BASE_CAPS | {"workflow_trigger", "write", "advanced_permission", "intelligence_workflow"},
        _BASE_INTEG | {"workflow", "write", "advanced_permission", "intelligence_workflow"},
        {"read", "write", "admin"},
    ),
)

# The spec's classification (E-6, E-8): the floor an update may tighten, never loosen.
SPEC_CAPABILITY_CLASSES: dict[CapabilityKind, Classification] = {
    CapabilityKind.READ_ONLY: Classification.ALLOWED,
    CapabilityKind.WORKFLOW_TRIGGER: Classification.ALLOWED,
    CapabilityKind.UI_COMPONENT: Classification.ALLOWED,
    CapabilityKind.WRITE: Classification.RESTRICTED,
    CapabilityKind.ADVANCED_PERMISSION: Classification.RESTRICTED,
    CapabilityKind.INTELLIGENCE_WORKFLOW: Classification.RESTRICTED,
    CapabilityKind.RAW_DATA_ACCESS: Classification.FORBIDDEN,
    CapabilityKind.GLOBAL_UI_OVERRIDE: Classification.FORBIDDEN,
    CapabilityKind.UNBOUNDED_PERMISSION: Classification.FORBIDDEN,
}
SPEC_INTEGRATION_CLASSES: dict[IntegrationKind, Classification] = {
    IntegrationKind.API: Classification.ALLOWED,
    IntegrationKind.WORKFLOW: Classification.ALLOWED,
    IntegrationKind.EXTENSION: Classification.ALLOWED,
    IntegrationKind.WRITE: Classification.RESTRICTED,
    IntegrationKind.ADVANCED_PERMISSION: Classification.RESTRICTED,
    IntegrationKind.INTELLIGENCE_WORKFLOW: Classification.RESTRICTED,
    IntegrationKind.DIRECT_DB_ACCESS: Classification.FORBIDDEN,
    IntegrationKind.INTERNAL_API_ACCESS: Classification.FORBIDDEN,
    IntegrationKind.UNBOUNDED_PERMISSION: Classification.FORBIDDEN,
}
STRICTNESS = {Classification.ALLOWED: 0, Classification.RESTRICTED: 1, Classification.FORBIDDEN: 2}

# E-11.1: every risk assessment carries these plans.
RISK_PLANS: tuple[str, ...] = ("risk_mitigation", "fallback_plan", "monitoring_plan")


class RiskPolicy(BaseModel):
    """E-11: how reviews and the proposal score into the four risk categories."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict_points: dict[Verdict, int] = {Verdict.PASS: 0, Verdict.CONCERN: 1, Verdict.FAIL: 3}
    category_weights: dict[RiskCategory, int] = {
        RiskCategory.TECHNICAL: 1,
        RiskCategory.SECURITY: 2,
        RiskCategory.COMPLIANCE: 2,
        RiskCategory.ECOSYSTEM: 1,
    }
    restricted_item_points: int = Field(default=2, ge=0, description="security, per item")
    breaking_change_points: int = Field(default=3, ge=0, description="technical")
    removal_points: int = Field(default=1, ge=0, description="ecosystem, per removed item")
    tier_change_points: int = Field(default=2, ge=0, description="ecosystem")
    # A level applies from its threshold (total weighted score) upwards.
    thresholds: dict[RiskLevel, int] = {
        RiskLevel.LOW: 0,
        RiskLevel.MEDIUM: 4,
        RiskLevel.HIGH: 9,
        RiskLevel.CRITICAL: 15,
    }
    plans_required: dict[RiskLevel, tuple[str, ...]] = {level: RISK_PLANS for level in RISK_ORDER}


class TierRules(BaseModel):
    """E-7.1 upgrade conditions and E-7.2 downgrade triggers, against recorded evidence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    evidence_window: Duration = timedelta(days=90)
    min_reports: int = Field(default=3, ge=1)
    upgrade_min_success_rate: float = Field(default=0.99, ge=0, le=1)
    upgrade_max_api_error_rate: float = Field(default=0.01, ge=0, le=1)
    violation_lookback: Duration = timedelta(days=365)
    max_unused_permissions: int = Field(default=0, ge=0)
    upgrade_max_risk: RiskLevel = RiskLevel.LOW
    downgrade_success_rate_floor: float = Field(default=0.90, ge=0, le=1)
    downgrade_api_error_ceiling: float = Field(default=0.10, ge=0, le=1)


class MonitoringPolicy(BaseModel):
    """M-4.6 / expansion stage 6: what healthy telemetry is and how long it is watched."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    expansion_period: Duration = timedelta(days=90)
    check_interval: Duration = timedelta(days=7)
    min_success_rate: float = Field(default=0.98, ge=0, le=1)
    max_api_error_rate: float = Field(default=0.02, ge=0, le=1)
    max_deprecated_calls: int = Field(default=0, ge=0)


class PolicyContent(BaseModel):
    """Everything a policy version says; `PUT /v1/policy` sends this (the version is the
    server's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tiers: tuple[TierSpec, ...] = DEFAULT_TIERS
    review: Deadline = Deadline(period=14 * DAY, reminder=10 * DAY)
    vote: Deadline = Deadline(period=7 * DAY, reminder=5 * DAY)
    partner_step: Deadline = Deadline(period=30 * DAY, reminder=23 * DAY)
    signoff: Deadline = Deadline(period=30 * DAY, reminder=21 * DAY)
    # P-3: a missed review or vote is escalated to CGB, who has this long to extend it.
    escalation: Deadline = Deadline(period=7 * DAY, reminder=5 * DAY)
    migration_windows: dict[TriggerClass, Duration] = {
        TriggerClass.REQUIRED: 90 * DAY,
        TriggerClass.OPTIONAL: 120 * DAY,
        TriggerClass.FORCED: 30 * DAY,
    }
    fallback_min_months: int = Field(default=6, ge=1)
    fallback_default_months: int = Field(default=12, ge=1)
    fallback_max_months: int = Field(
        default=24,
        ge=1,
        description="How long a fallback may last in all, extensions included (M-4.7; ≥ 12).",
    )
    remediation_windows: dict[Severity, Duration] = {
        Severity.MINOR: 30 * DAY,
        Severity.MODERATE: 14 * DAY,
        Severity.SEVERE: timedelta(0),
    }
    # M-8.2 → M-9: the remediation severity of what §8 forbids, by validation check.
    validation_severity: dict[str, Severity] = {
        "api_contract": Severity.MODERATE,
        "workflow": Severity.MODERATE,
        "permission_boundary": Severity.SEVERE,
        "runtime_compatibility": Severity.MODERATE,
    }
    monitoring: MonitoringPolicy = MonitoringPolicy()
    tier_rules: TierRules = TierRules()
    risk: RiskPolicy = RiskPolicy()
    capability_classes: dict[CapabilityKind, Classification] = SPEC_CAPABILITY_CLASSES
    integration_classes: dict[IntegrationKind, Classification] = SPEC_INTEGRATION_CLASSES
    max_open_proposals_per_partner: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _complete_tables(self) -> PolicyContent:
        """Every kind, trigger class, severity and risk level has an entry."""
        for table, keys, name in (
            (self.capability_classes, set(CapabilityKind), "capability_classes"),
            (self.integration_classes, set(IntegrationKind), "integration_classes"),
            (self.migration_windows, set(TriggerClass), "migration_windows"),
            (self.remediation_windows, set(Severity), "remediation_windows"),
            (self.validation_severity, set(VALIDATION_CHECKS), "validation_severity"),
            (self.risk.thresholds, set(RiskLevel), "risk.thresholds"),
            (self.risk.plans_required, set(RiskLevel), "risk.plans_required"),
        ):
            missing = keys - set(table)
            if missing:
                raise ValueError(f"{name} has no entry for {', '.join(sorted(missing))}")
            unknown = set(table) - keys
            if unknown:
                raise ValueError(f"{name} has unknown entries {', '.join(sorted(unknown))}")
        return self

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)

    def tier(self, name: str) -> TierSpec | None:
        return next((t for t in self.tiers if t.name == name), None)


class PolicyDocument(PolicyContent):
    version: int = Field(default=1, ge=1)


DEFAULT_POLICY = PolicyDocument()


def check_floors(doc: PolicyContent) -> Decision:
    """The spec's hard floors: a policy may tighten them, never loosen them. Each finding names
    the field and the rule it would break."""
    out: list[Finding] = []

    def refuse(field: str, rule: str, message: str) -> None:
        out.append(Finding(field=field, rule=rule, message=message))

    if doc.fallback_min_months < 6:
        refuse("fallback_min_months", "M-6.2", "a fallback lasts at least 6 months")
    if doc.fallback_default_months < max(doc.fallback_min_months, 6):
        refuse("fallback_default_months", "M-6.2", "the default fallback is at least the minimum")
    if doc.fallback_max_months < max(doc.fallback_default_months, 12):
        refuse("fallback_max_months", "M-6.2", "a fallback may be extended to 12 months at least")
    limits = {Severity.MINOR: 30 * DAY, Severity.MODERATE: 14 * DAY, Severity.SEVERE: timedelta(0)}
    for severity, limit in limits.items():
        window = doc.remediation_windows[severity]
        if window > limit or window < timedelta(0):
            refuse(
                f"remediation_windows.{severity.value}",
                "M-9.2",
                f"a {severity.value} remediation window is at most {limit.days} days",
            )
    for table, spec, name, rules in (
        (doc.capability_classes, SPEC_CAPABILITY_CLASSES, "capability_classes", ("E-6.2", "E-6.3")),
        (
            doc.integration_classes,
            SPEC_INTEGRATION_CLASSES,
            "integration_classes",
            ("E-8.2", "E-8.3"),
        ),
    ):
        for kind, floor in spec.items():
            if STRICTNESS[table[kind]] < STRICTNESS[floor]:  # type: ignore[index]
                rule = rules[1] if floor is Classification.FORBIDDEN else rules[0]
                refuse(f"{name}.{kind.value}", rule, f"{kind.value} is {floor.value} by the spec")
    for level, plans in doc.risk.plans_required.items():
        missing = [p for p in RISK_PLANS if p not in plans]
        if missing:
            refuse(
                f"risk.plans_required.{level.value}",
                "E-11.1",
                f"every risk assessment requires {', '.join(RISK_PLANS)}",
            )
    thresholds = [doc.risk.thresholds[level] for level in RISK_ORDER]
    if thresholds != sorted(thresholds) or len(set(thresholds)) != len(thresholds):
        refuse("risk.thresholds", "E-11.1", "risk levels rise with the score: low < … < critical")
    windows = doc.migration_windows
    if not (
        windows[TriggerClass.FORCED] < windows[TriggerClass.REQUIRED]
        and windows[TriggerClass.FORCED] < windows[TriggerClass.OPTIONAL]
    ):
        refuse("migration_windows.forced", "M-2.3", "a forced migration has a shorter window")
    for name in ("review", "vote", "partner_step", "signoff", "escalation"):
        d: Deadline = getattr(doc, name)
        if not timedelta(0) < d.reminder < d.period:
            refuse(name, "P-3", "every step has a deadline, with its reminder before it")
    m = doc.monitoring
    if not timedelta(0) < m.check_interval <= m.expansion_period:
        refuse(
            "monitoring.check_interval",
            "M-4.6",
            "telemetry is checked at an interval above zero, within the monitoring period",
        )
    names = doc.tier_names
    if len(set(names)) != len(names) or not names:
        refuse("tiers", "E-7.3", "the tier catalogue lists each tier once")
    for i, tier in enumerate(doc.tiers):
        bad: list[str] = [
            k.value
            for k in tier.capability_kinds
            if SPEC_CAPABILITY_CLASSES[k] is Classification.FORBIDDEN
        ]
        bad += [
            k.value
            for k in tier.integration_kinds
            if SPEC_INTEGRATION_CLASSES[k] is Classification.FORBIDDEN
        ]
        if bad or "*" in "".join(tier.permission_actions):
            refuse(f"tiers.{i}", "E-5.2", f"tier {tier.name} would hold forbidden: {bad or '*'}")
    # A tier's rank is what it holds (E-7.1, E-7.4): each holds at least what the one below
    # does — else a "downgrade" onto a lower-ranked tier could widen what a partner may do.
    for i, (lower, tier) in enumerate(zip(doc.tiers, doc.tiers[1:], strict=False), start=1):
        if not (
            lower.capability_kinds <= tier.capability_kinds
            and lower.integration_kinds <= tier.integration_kinds
            and lower.permission_actions <= tier.permission_actions
        ):
            refuse(
                f"tiers.{i}",
                "E-7.4",
                f"tier {tier.name} ranks above {lower.name} and holds at least what it does",
            )
    return Decision(findings=tuple(out))


def check_update(current: PolicyDocument, proposed: PolicyContent) -> Decision:
    """A new version keeps the current tiers, no more and no fewer, in their order (tiers come
    and go, and rank, by governance, E-7.3 — not by editing the document), and holds the
    floors."""
    floors = check_floors(proposed)
    dropped = [t for t in current.tier_names if t not in proposed.tier_names]
    kept = [t for t in proposed.tier_names if t in current.tier_names]
    out = list(floors.findings)
    if dropped:
        out.append(
            Finding(
                field="tiers",
                rule="E-7.3",
                message=f"tiers cannot be removed by a policy edit: {', '.join(dropped)}",
            )
        )
    added = [t for t in proposed.tier_names if t not in current.tier_names]
    if added:  # E-7.3: a new tier is a category-B proposal's, with its vote and plans
        out.append(
            Finding(
                field="tiers",
                rule="E-7.3",
                message=f"tiers are created through a category B proposal, not a policy edit: "
                f"{', '.join(added)}",
            )
        )
    if not dropped and kept != list(current.tier_names):
        # A tier's rank is its place: reordered, partners would rise or fall with no migration.
        out.append(
            Finding(
                field="tiers",
                rule="E-7.3",
                message=f"tiers keep their order (lowest first): {', '.join(current.tier_names)}",
            )
        )
    return Decision(findings=tuple(out))


def apply_change(
    current: PolicyDocument, change: Mapping[str, Any]
) -> tuple[PolicyContent | None, Decision]:
    """E-3.4 (Decision): a category-D proposal's `policy_change` — top-level fields, each
    replacing that field of the policy in force — as the policy it would make, judged as a
    `PUT /v1/policy` is (the spec's floors, the tiers kept: `check_update`). Each refusal names
    its field and rule; nothing is made when one is refused."""
    unknown = sorted(set(change) - set(PolicyContent.model_fields))
    if unknown:
        return None, Decision(
            findings=tuple(
                Finding(field=f"policy_change.{k}", rule="E-3.4", message="not a policy field")
                for k in unknown
            )
        )
    merged = {**current.model_dump(mode="json", exclude={"version"}), **change}
    try:
        proposed = PolicyContent.model_validate(merged)
    except ValidationError as exc:
        return None, Decision(
            findings=tuple(
                Finding(
                    field="policy_change." + ".".join(str(p) for p in e["loc"]),
                    rule="E-3.4",
                    message=str(e["msg"]),
                )
                for e in exc.errors()
            )
        )
    decision = check_update(current, proposed)
    return (proposed if decision.allowed else None), decision


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The top-level policy fields whose value differs between two stored versions, compared
    as the policy reads them (a tier's kinds are sets: their stored order means nothing)."""
    try:
        old, new = PolicyContent.model_validate(before), PolicyContent.model_validate(after)
    except ValidationError:  # a version stored under older rules: compared as stored
        return sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
    return sorted(k for k in PolicyContent.model_fields if getattr(old, k) != getattr(new, k))


class PolicyChange(BaseModel):
    """`GET /v1/policy/history`: one version, who made it (a body's role, or the expansion
    whose category-D release published it), when, and the fields it changed."""

    version: int
    author: str
    at: datetime
    fields: list[str]
