"""Migration rules (Migration Playbook): trigger classes and what each allows (M-2), types
(M-3), fallback (M-6), validation (M-8), monitoring and completion (M-4.6, M-4.7)."""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from policy.decisions import Decision, Finding
from policy.document import PolicyContent, TierSpec
from policy.evidence import Telemetry
from policy.grants import Grant, Holdings, governance_update, grantable, read_only, within_tier
from policy.tiers import tier_move
from policy.triggers import TRIGGER_CLASS
from policy.types import action_of
from policy.vocabulary import (
    MigrationStage,
    MigrationType,
    Trigger,
    TriggerClass,
)

# M-3.1: the subtypes of each type.
SUBTYPES: dict[MigrationType, frozenset[str]] = {
    MigrationType.VERSION: frozenset({"os", "api", "workflow"}),
    MigrationType.TIER: frozenset({"upgrade", "downgrade"}),
    MigrationType.RUNTIME: frozenset({"extension", "workflow", "intelligence"}),
    MigrationType.PERMISSION: frozenset({"reduction", "governed_expansion", "restructuring"}),
    MigrationType.WORKFLOW: frozenset({"trigger", "handler", "permission"}),
}

# Which types a trigger can lead to; a forced trigger may take any remedy.
TRIGGER_TYPES: dict[Trigger, frozenset[MigrationType]] = {
    Trigger.OS_MAJOR_VERSION: frozenset({MigrationType.VERSION}),
    Trigger.API_DEPRECATION: frozenset({MigrationType.VERSION}),
    Trigger.WORKFLOW_DEPRECATION: frozenset({MigrationType.VERSION, MigrationType.WORKFLOW}),
    Trigger.PERMISSION_CHANGE: frozenset({MigrationType.PERMISSION, MigrationType.WORKFLOW}),
    Trigger.RUNTIME_CHANGE: frozenset({MigrationType.RUNTIME}),
    Trigger.TIER_UPGRADE: frozenset({MigrationType.TIER}),
    Trigger.TIER_DOWNGRADE: frozenset({MigrationType.TIER}),
    Trigger.CAPABILITY_EXPANSION: frozenset({MigrationType.PERMISSION, MigrationType.WORKFLOW}),
    Trigger.COMPLIANCE_VIOLATION: frozenset(MigrationType),
    Trigger.SECURITY_VIOLATION: frozenset(MigrationType),
    Trigger.PARTNER_INSTABILITY: frozenset(MigrationType),
}

CLASS_RULE = {
    TriggerClass.REQUIRED: "M-2.1",
    TriggerClass.OPTIONAL: "M-2.2",
    TriggerClass.FORCED: "M-2.3",
}

# M-4.1: the notice does these, in this order, before anything else.
NOTICE_ACTIONS = ("notify_partner", "define_window", "activate_fallback")
MIGRATION_ORDER: tuple[MigrationStage, ...] = tuple(MigrationStage)


def trigger_class(trigger: Trigger) -> TriggerClass:
    return TRIGGER_CLASS[trigger]


def partner_may_start(trigger: Trigger) -> Decision:
    """M-2.2: a partner starts only optional migrations (a required or forced one is the
    platform's, M-2.1 / M-2.3)."""
    if TRIGGER_CLASS[trigger] is TriggerClass.OPTIONAL:
        return Decision()
    return Decision(
        findings=(
            Finding(
                field="trigger",
                rule="M-2.2",
                message="a partner starts only optional migrations",
            ),
        )
    )


def may_decline(trigger: Trigger) -> Decision:
    """M-2.2: the partner may decline an optional migration; M-2.1 / M-2.3: never a required or
    forced one."""
    cls = TRIGGER_CLASS[trigger]
    if cls is TriggerClass.OPTIONAL:
        return Decision()
    return Decision(
        findings=(
            Finding(
                field="trigger",
                rule=CLASS_RULE[cls],
                message=f"a {cls.value} migration ({trigger.value}) cannot be declined",
            ),
        )
    )


def migration_window(trigger: Trigger, policy: PolicyContent) -> timedelta:
    """M-2.x: the window by trigger class; forced ones are shorter (M-2.3, held by the floors)."""
    return policy.migration_windows[TRIGGER_CLASS[trigger]]


def add_months(start: datetime, months: int) -> datetime:
    """Calendar months (Jan 31 + 1 month = Feb 28/29)."""
    month0 = start.month - 1 + months
    year, month = start.year + month0 // 12, month0 % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def fallback_until(start: datetime, months: int) -> datetime:
    return add_months(start, months)


def check_fallback_period(start: datetime, until: datetime, policy: PolicyContent) -> Decision:
    """M-6.2: a fallback lasts at least the minimum (6 months), counted in calendar months."""
    floor = add_months(start, policy.fallback_min_months)
    if until >= floor:
        return Decision()
    return Decision(
        findings=(
            Finding(
                field="fallback_months",
                rule="M-6.2",
                message=f"a fallback lasts at least {policy.fallback_min_months} months "
                f"(until {floor.date().isoformat()} or later)",
            ),
        )
    )


class Governing(StrEnum):
    """How far the expansion a migration names (`expansion_id`) has gone, for its partner."""

    NONE = "none"  # none named, unknown, another partner's, or not approved
    APPROVED = "approved"
    RELEASED = "released"


def governing(*, same_partner: bool, approved: bool, released: bool) -> Governing:
    if not same_partner or not approved:
        return Governing.NONE
    return Governing.RELEASED if released else Governing.APPROVED


def check_request(
    *,
    trigger: Trigger,
    type_: MigrationType,
    subtype: str,
    fallback_months: int | None,
    policy: PolicyContent,
    governed_by: Governing = Governing.NONE,
    target: Mapping[str, str] | None = None,
    current_tier: str | None = None,
) -> Decision:
    """A migration as requested by hand: M-3.1 type and subtype, and the trigger leads to that
    type; M-3.2 a permission expansion is governed by an approved expansion, a capability
    expansion by a released one; the tier moves only by governance (E-7.1, E-7.2, M-2.2,
    M-2.3); M-6.2 fallback length."""
    out: list[Finding] = []
    if subtype not in SUBTYPES[type_]:
        out.append(
            Finding(
                field="subtype",
                rule="M-3.1",
                message=f"a {type_.value} migration is one of {', '.join(sorted(SUBTYPES[type_]))}",
            )
        )
    if type_ not in TRIGGER_TYPES[trigger]:
        allowed = ", ".join(sorted(t.value for t in TRIGGER_TYPES[trigger]))
        out.append(
            Finding(
                field="type",
                rule=CLASS_RULE[TRIGGER_CLASS[trigger]],
                message=f"trigger {trigger.value} leads to a {allowed} migration",
            )
        )
    if (
        type_ is MigrationType.PERMISSION
        and subtype == "governed_expansion"
        and governed_by is Governing.NONE
    ):
        out.append(
            Finding(
                field="expansion_id",
                rule="M-3.2",
                message="a permission expansion needs an approved expansion proposal",
            )
        )
    if trigger is Trigger.CAPABILITY_EXPANSION and governed_by is not Governing.RELEASED:
        out.append(
            Finding(
                field="expansion_id",
                rule="M-3.2",
                message="a capability expansion migration names, in expansion_id, a released "
                "expansion of the partner",
            )
        )
    out += _tier_findings(trigger, type_, subtype, target or {}, current_tier, policy)
    months = policy.fallback_default_months if fallback_months is None else fallback_months
    if months < policy.fallback_min_months:
        out.append(
            Finding(
                field="fallback_months",
                rule="M-6.2",
                message=f"a fallback lasts at least {policy.fallback_min_months} months",
            )
        )
    return Decision(findings=tuple(out))


def _tier_findings(
    trigger: Trigger,
    type_: MigrationType,
    subtype: str,
    target: Mapping[str, str],
    current_tier: str | None,
    policy: PolicyContent,
) -> list[Finding]:
    """E-7.1: no one starts a tier upgrade by hand (an approved category-B release starts it);
    a tier target only on a tier migration (M-3.1), and only in the trigger's direction —
    down, for the partner's own downgrade or a forced one (E-7.2, M-2.2, M-2.3)."""
    if trigger is Trigger.TIER_UPGRADE:
        return [
            Finding(
                field="trigger",
                rule="E-7.1",
                message="a tier rises only through an approved category B proposal, whose "
                "release starts the upgrade migration; submit one with POST /v1/expansions",
            )
        ]
    tier = target.get("tier")
    if type_ is not MigrationType.TIER:
        if tier is None:
            return []
        return [
            Finding(
                field="target.tier",
                rule="M-3.1",
                message=f"a tier moves only by a tier migration, not a {type_.value} one",
            )
        ]
    if tier is None:
        return [
            Finding(field="target.tier", rule="M-3.1", message="a tier migration names its tier")
        ]
    if current_tier is None:
        return []
    return list(
        tier_move(
            current=current_tier,
            target=tier,
            trigger=trigger,
            subtype=subtype,
            governed=False,
            policy=policy,
        ).findings
    )


def fallback_permissions(current: Sequence[str]) -> list[str]:
    """M-6.1: the fallback keeps the partner's APIs and workflows, with read-only permissions."""
    return sorted(p for p in current if action_of(p) == "read" and "*" not in p)


def check_fallback(fallback: Sequence[str], current: Sequence[str]) -> Decision:
    """M-6.1 read-only fallback permissions; M-6.3 a fallback never expands permissions."""
    out = []
    for i, perm in enumerate(fallback):
        if perm not in current or "*" in perm:
            out.append(
                Finding(
                    field=f"fallback.permissions.{i}",
                    rule="M-6.3",
                    message=f"{perm} is not held today: a fallback never expands permissions",
                )
            )
        elif action_of(perm) != "read":
            out.append(
                Finding(
                    field=f"fallback.permissions.{i}",
                    rule="M-6.1",
                    message=f"{perm} is not read-only",
                )
            )
    return Decision(findings=tuple(out))


# --- monitoring and completion (M-4.6, M-4.7) -----------------------------------------------


def telemetry_health(
    reports: Sequence[Telemetry],
    granted: Sequence[str],
    policy: PolicyContent,
    *,
    moved_off: Sequence[str] = (),
) -> Decision:
    """M-4.6: workflow reliability, permission usage, API error rates (and deprecated calls) —
    and, for a migration, no call in the period to what it moved off (M-8.1 Decision: the
    platform's traffic, not the partner's word)."""
    m = policy.monitoring
    if not reports:
        return Decision(
            findings=(Finding(field="telemetry", rule="M-4.6", message="no telemetry reported"),)
        )
    latest = max(reports, key=lambda r: r.period_end)
    out = []
    if latest.workflow_success_rate < m.min_success_rate:
        out.append(
            Finding(
                field="workflow_success_rate",
                rule="M-4.6",
                message=f"{latest.workflow_success_rate} below {m.min_success_rate}",
            )
        )
    if latest.api_error_rate > m.max_api_error_rate:
        out.append(
            Finding(
                field="api_error_rate",
                rule="M-4.6",
                message=f"{latest.api_error_rate} above {m.max_api_error_rate}",
            )
        )
    if latest.deprecated_calls > m.max_deprecated_calls:
        out.append(
            Finding(
                field="deprecated_calls",
                rule="M-4.6",
                message=f"{latest.deprecated_calls} calls still on deprecated versions",
            )
        )
    for key in moved_off:
        calls = sum(r.calls_by_version.get(key, 0) for r in reports)
        if calls:
            out.append(
                Finding(
                    field="calls_by_version",
                    rule="M-4.6",
                    message=f"{calls} calls to {key}, which the migration moved off",
                )
            )
    beyond = sorted(p for p, n in latest.permission_usage.items() if n > 0 and p not in granted)
    if beyond:
        out.append(
            Finding(
                field="permission_usage",
                rule="M-4.6",
                message=f"calls on permissions not granted: {', '.join(beyond)}",
            )
        )
    return Decision(findings=tuple(out))


def completion_allowed(*, now: datetime, fallback_until: datetime, health: Decision) -> Decision:
    """M-4.7: the fallback is removed only after its period *and* with healthy telemetry."""
    out = list(health.findings)
    if now < fallback_until:
        out.append(
            Finding(
                field="fallback",
                rule="M-4.7",
                message=f"the fallback runs until {fallback_until.isoformat()}",
            )
        )
    return Decision(findings=tuple(out))


def takes_effect(
    held: Holdings,
    *,
    trigger: Trigger,
    type_: MigrationType | None,
    subtype: str,
    moved_down_to: TierSpec | None,
) -> Holdings:
    """What the partner holds once a migration's target applies (at its rollout, or at its
    window's end when forced): a tier moved down keeps only what the lower tier allows (E-7.4
    Decision); a forced permission reduction — the downgrade of a partner on the lowest tier —
    keeps the read-only permissions (M-2.3, M-9.3). Anything else is unchanged."""
    if moved_down_to is not None:
        return within_tier(held, moved_down_to)
    forced = TRIGGER_CLASS[trigger] is TriggerClass.FORCED
    if forced and type_ is MigrationType.PERMISSION and subtype == "reduction":
        return read_only(held)
    return held


def after_migration(
    held: Holdings,
    *,
    tier_now: str,
    target: Mapping[str, str],
    trigger: Trigger | None,
    type_: MigrationType | None,
    subtype: str,
    policy: PolicyContent,
    adds: Sequence[Grant] = (),
    removes: Sequence[str] = (),
    new_tier: TierSpec | None = None,
) -> tuple[TierSpec | None, Holdings]:
    """The tier the partner will hold and what it will hold once the migration has taken
    effect, as validation judges a manifest (M-8.1): the target's tier (a new tier as its
    proposal defined it, E-7.3) with the grants that come with it (E-2.7, within that tier's
    catalogue), and what a lower tier disallows (E-7.4) or a forced reduction (M-2.3) removed.
    `adds`, `removes` and `new_tier` are what a category-B release's migration carries."""
    name = target.get("tier", tier_now)
    spec = new_tier if new_tier is not None and new_tier.name == name else policy.tier(name)
    names = policy.tier_names
    down = (
        spec is not None
        and name in names
        and tier_now in names
        and names.index(name) < names.index(tier_now)
    )
    if (adds or removes) and not down:
        granted, _ = grantable(held, adds, removes, spec)
        held = governance_update(held, add=granted, removes=removes)
    if trigger is None:
        return spec, within_tier(held, spec) if down and spec is not None else held
    return spec, takes_effect(
        held, trigger=trigger, type_=type_, subtype=subtype, moved_down_to=spec if down else None
    )


def check_fallback_extension(
    started: datetime, until: datetime, months: int | None, policy: PolicyContent
) -> Decision:
    """M-4.7 / P-3: a fallback unhealthy at its end is extended by whole months, never past
    `fallback_max_months` from the migration's start."""
    if months is None:
        return Decision(
            findings=(Finding(field="months", rule="M-4.7", message="required to extend"),)
        )
    limit = add_months(started, policy.fallback_max_months)
    if add_months(until, months) > limit:
        return Decision(
            findings=(
                Finding(
                    field="months",
                    rule="M-4.7",
                    message=f"a fallback lasts at most {policy.fallback_max_months} months "
                    f"(until {limit.isoformat()})",
                ),
            )
        )
    return Decision()
