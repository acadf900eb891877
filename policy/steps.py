"""The order of stages and steps (E-12.1, M-4, M-9.1). What each step must carry is in its form
(policy/forms.py)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TypeVar

from policy.decisions import Decision, Finding
from policy.vocabulary import ExpansionStage, MigrationStage

# M-9.1, in order.
REMEDIATION_STEPS = ("root_cause", "plan", "fixes", "revalidation", "restore")

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
