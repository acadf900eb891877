"""Completeness of each partner step and the order of stages (E-2.5 to E-2.7, E-9.1, E-12.1,
M-4.x, M-7.1, M-9.1): one generic check, one field list per step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import TypeVar

from policy.decisions import Decision, Finding
from policy.vocabulary import ExpansionStage, MigrationStage

# E-2.5 integration plan; E-2.6 implementation, each reported done; E-2.7 + E-9.1 release.
INTEGRATION_PLAN_FIELDS = ("versioning", "compatibility_rules", "rollout_plan")
IMPLEMENTATION_FIELDS = ("development", "testing", "documentation")
RELEASE_FIELDS = ("version", "migration_guide", "compatibility_matrix_update", "fallback_behaviour")
# M-4.2 plan, M-4.3 implementation, M-7.1 documentation (required; tutorials/onboarding optional).
MIGRATION_PLAN_FIELDS = ("strategy", "compatibility_plan", "testing_plan", "rollback_plan")
MIGRATION_IMPLEMENTATION_FIELDS = IMPLEMENTATION_FIELDS
DOCUMENTATION_FIELDS = (
    "migration_guide",
    "compatibility_notes",
    "version_notes",
    "workflow_changes",
    "permission_changes",
)
OPTIONAL_DOCUMENTATION_FIELDS = ("tutorials", "onboarding_guides")
# M-9.1, in order.
REMEDIATION_STEPS = ("root_cause", "plan", "fixes", "revalidation", "restore")

STEP_RULES: dict[tuple[str, ...], str] = {
    INTEGRATION_PLAN_FIELDS: "E-2.5",
    IMPLEMENTATION_FIELDS: "E-2.6",
    MIGRATION_PLAN_FIELDS: "M-4.2",
    DOCUMENTATION_FIELDS: "M-7.1",
}


def require_fields(values: Mapping[str, object], fields: Sequence[str], rule: str) -> Decision:
    """Every listed field present and not blank; each missing one named with the rule."""
    findings = []
    for name in fields:
        value = values.get(name)
        blank = value is None or (isinstance(value, str) and not value.strip())
        if blank:
            findings.append(Finding(field=name, rule=rule, message=f"required ({rule})"))
    return Decision(findings=tuple(findings))


def check_release(values: Mapping[str, object]) -> Decision:
    """E-2.7: a versioned release with migration guides; E-9.1: and a compatibility-matrix
    update and fallback behaviour. An unversioned one is a silent breaking change (E-9.2)."""
    found = list(require_fields(values, ("migration_guide",), "E-2.7").findings)
    found += require_fields(
        values, ("compatibility_matrix_update", "fallback_behaviour"), "E-9.1"
    ).findings
    if not values.get("version"):
        found.append(
            Finding(field="version", rule="E-9.2", message="an unversioned release is forbidden")
        )
    return Decision(findings=tuple(found))


def check_rollout(values: Mapping[str, object]) -> Decision:
    """M-4.5 / M-5.2: a rollout is a versioned release; an unversioned change is forbidden."""
    if values.get("version"):
        return Decision()
    return Decision(
        findings=(
            Finding(field="version", rule="M-5.2", message="an unversioned rollout is forbidden"),
        )
    )


S = TypeVar("S", bound=StrEnum)


def next_stage(order: Sequence[S], current: S) -> S | None:
    """E-12.1 / M-4: stages run in order; None after the last."""
    i = list(order).index(current)
    return order[i + 1] if i + 1 < len(order) else None


def check_transition(order: Sequence[S], current: S, target: S, rule: str) -> Decision:
    """Only the next stage may follow; no stage is skipped or revisited."""
    if next_stage(order, current) == target:
        return Decision()
    return Decision(
        findings=(
            Finding(
                field="stage",
                rule=rule,
                message=f"{target.value} cannot follow {current.value}",
            ),
        )
    )


EXPANSION_STAGES: tuple[ExpansionStage, ...] = tuple(ExpansionStage)
MIGRATION_STAGES: tuple[MigrationStage, ...] = tuple(MigrationStage)


def check_remediation_step(done: Sequence[str], step: str) -> Decision:
    """M-9.1: root cause, plan, fixes, re-validation, restore — each in its turn."""
    expected = REMEDIATION_STEPS[len(done)] if len(done) < len(REMEDIATION_STEPS) else None
    if step == expected:
        return Decision()
    return Decision(
        findings=(
            Finding(
                field="step",
                rule="M-9.1",
                message=f"{step} is not next; next is {expected or 'nothing (remediation done)'}",
            ),
        )
    )
