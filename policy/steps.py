"""The order of stages and steps (E-12.1, M-4, M-9.1). What each step must carry is in its form
(policy/forms.py)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from policy.decisions import Decision, Finding
from policy.vocabulary import Body, ExpansionStage, MigrationStage, Role

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


def _refused(field: str, rule: str, message: str) -> Decision:
    return Decision(findings=(Finding(field=field, rule=rule, message=message),))


def may_take(role: Role, allowed: Collection[Role]) -> Decision:
    """P-6: a step is taken only by the roles it names — checked again inside the workflow, so
    a step sent straight to Temporal by the wrong role is refused like one sent through the
    API."""
    if role in allowed:
        return Decision()
    names = ", ".join(sorted(r.value for r in allowed))
    return _refused("actor", "P-6", f"{role.value} may not do this (only {names})")


def is_the_partner(role: Role, partner_id: str | None, of: str) -> Decision:
    """P-6: a partner's step is taken by the partner of the process, and no one else."""
    if role is Role.PARTNER and partner_id == of:
        return Decision()
    return _refused("actor", "P-6", "only the partner of this process may do this")


def once(body: Body, done: Collection[Body], *, rule: str, what: str) -> Decision:
    """E-2.2 / E-2.4: each body reviews once, and votes once."""
    if body not in done:
        return Decision()
    return _refused("actor", rule, f"{body.value} has already {what}")


def check_extension(until: datetime, deadline: datetime, now: datetime) -> Decision:
    """P-3: an extension moves a pending deadline later — never earlier, never into the past."""
    floor = max(deadline, now)
    if until > floor:
        return Decision()
    return _refused("until", "P-3", f"must be after {floor.isoformat()}")


def says_passed(passed: bool | None) -> Decision:
    """M-9.1: SCO's re-validation says whether it passed."""
    if passed is not None:
        return Decision()
    return _refused("passed", "M-9.1", "required")
