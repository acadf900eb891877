"""Migration trigger classes (M-2): required, optional and forced, and what a forced migration
takes away. One definition, read by the migration rules, the tier rules and the store."""

from __future__ import annotations

from policy.vocabulary import Trigger, TriggerClass

TRIGGER_CLASS: dict[Trigger, TriggerClass] = {
    # M-2.1
    Trigger.OS_MAJOR_VERSION: TriggerClass.REQUIRED,
    Trigger.API_DEPRECATION: TriggerClass.REQUIRED,
    Trigger.WORKFLOW_DEPRECATION: TriggerClass.REQUIRED,
    Trigger.PERMISSION_CHANGE: TriggerClass.REQUIRED,
    Trigger.RUNTIME_CHANGE: TriggerClass.REQUIRED,
    # M-2.2
    Trigger.TIER_UPGRADE: TriggerClass.OPTIONAL,
    Trigger.TIER_DOWNGRADE: TriggerClass.OPTIONAL,
    Trigger.CAPABILITY_EXPANSION: TriggerClass.OPTIONAL,
    # M-2.3
    Trigger.COMPLIANCE_VIOLATION: TriggerClass.FORCED,
    Trigger.SECURITY_VIOLATION: TriggerClass.FORCED,
    Trigger.PARTNER_INSTABILITY: TriggerClass.FORCED,
}

# M-2.3: the triggers that force a migration on the partner.
FORCED_TRIGGERS = frozenset(t for t, cls in TRIGGER_CLASS.items() if cls is TriggerClass.FORCED)

# E-7.2 / M-2.3: what a forced migration takes away — the tier (a downgrade), or permissions
# where there is no tier below (a reduction).
TAKING_SUBTYPES = frozenset({"downgrade", "reduction"})


def is_forced_downgrade(trigger: str | None, subtype: str | None) -> bool:
    """E-7.2 / M-2.3: whether a migration is a forced downgrade (of the tier, or a permission
    reduction): while one runs, no upgrade is eligible and telemetry starts no second one."""
    return trigger in FORCED_TRIGGERS and subtype in TAKING_SUBTYPES
