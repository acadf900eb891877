"""Every human step the console offers a form for: the API operation it posts to (its body model
is the route's own, checked by a test), who may take it and when it is shown. Showing is a
courtesy — a form for what the actor may do now; the API judges every post exactly as it
judges the same request sent with curl."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from api.console.forms import Field, fields_of
from policy.forms import (
    DeadlineExtension,
    FallbackDecision,
    ImplementationReportRequest,
    IntegrationPlan,
    MigrationDocumentationRequest,
    MigrationImplementationRequest,
    MigrationPlan,
    MonitoringDecision,
    OutcomeReview,
    Plans,
    ReleaseRequest,
    RemediationStep,
    RolloutRequest,
    Withdrawal,
)
from policy.review import MEANING, Review, criteria_of
from policy.vocabulary import Body, ProcessKind, ProcessStatus, Role, TriggerClass
from policy.vote import Vote

BODIES = frozenset({Role.TSC, Role.SCO, Role.ERC, Role.CGB})
PARTNER = frozenset({Role.PARTNER})


@dataclass(frozen=True)
class StepForm:
    """One form: posted to `/v1/<kind>s/{id}/<path>` with a `model` body."""

    kind: ProcessKind
    path: str
    title: str
    roles: frozenset[Role]
    model: type[BaseModel]
    # The process's awaited step (`step`, before any `:n`) this form answers; empty: shown
    # whenever `shown` says so.
    answers: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    button: str = "Send"
    # Shown only to an actor the process awaits (the step's own actors), not to every role
    # that may post it.
    awaited_only: bool = True

    @property
    def key(self) -> str:
        return self.path

    def fields(self, role: Role) -> tuple[Field, ...]:
        if self.model is Review:
            return review_fields(Body(role.value))
        return fields_of(self.model, only=self.only)


def review_fields(body: Body) -> tuple[Field, ...]:
    """A body's review: its own criteria only (E-4), each with its meaning, then the rest."""
    verdicts = (("pass", "pass"), ("concern", "concern"), ("fail", "fail"))
    criteria = tuple(
        Field(
            name,
            name.replace("_", " ").capitalize(),
            "radio",
            True,
            MEANING[name],
            verdicts,
        )
        for name in criteria_of(body)
    )
    rest = fields_of(Review, only=("recommendation", "notes", "confidential_notes", "forbidden"))
    return (Field("criteria", "Criteria", "group", True, "", children=criteria), *rest)


E, M, R = ProcessKind.EXPANSION, ProcessKind.MIGRATION, ProcessKind.REMEDIATION

STEPS: tuple[StepForm, ...] = (
    StepForm(E, "reviews", "Review", BODIES, Review, ("reviews",), button="Send the review"),
    StepForm(E, "plans", "Plans for the vote", PARTNER, Plans, ("plans",)),
    StepForm(E, "votes", "Vote", BODIES, Vote, ("votes",), button="Cast the vote"),
    StepForm(
        E, "integration-plan", "Integration plan", PARTNER, IntegrationPlan, ("integration_plan",)
    ),
    StepForm(
        E,
        "implementation",
        "Implementation report",
        PARTNER,
        ImplementationReportRequest,
        ("implementation",),
    ),
    StepForm(
        E,
        "release",
        "Versioned release",
        PARTNER,
        ReleaseRequest,
        ("release",),
        button="Publish the release",
    ),
    StepForm(
        E,
        "monitoring-decision",
        "Decision on the monitoring breach",
        frozenset({Role.CGB, Role.SCO}),
        MonitoringDecision,
        ("monitoring_decision",),
    ),
    StepForm(
        E,
        "outcome-review",
        "Outcome review",
        frozenset({Role.CGB}),
        OutcomeReview,
        ("outcome_review",),
    ),
    StepForm(
        E,
        "deadline",
        "Extend the deadline",
        frozenset({Role.CGB, Role.ADMIN}),
        DeadlineExtension,
        awaited_only=False,
        button="Extend",
    ),
    StepForm(
        E,
        "withdraw",
        "Withdraw the proposal",
        PARTNER,
        Withdrawal,
        awaited_only=False,
        button="Withdraw",
    ),
    StepForm(M, "plan", "Migration plan", PARTNER, MigrationPlan, ("plan",)),
    StepForm(
        M,
        "implementation",
        "Implementation and manifest",
        PARTNER,
        MigrationImplementationRequest,
        ("implementation",),
    ),
    StepForm(
        M,
        "documentation",
        "Documentation",
        PARTNER,
        MigrationDocumentationRequest,
        ("documentation",),
    ),
    StepForm(M, "rollout", "Rollout", PARTNER, RolloutRequest, ("rollout",)),
    StepForm(
        M,
        "fallback-decision",
        "Decision on the fallback",
        frozenset({Role.TSC, Role.CGB}),
        FallbackDecision,
        ("fallback_decision",),
    ),
    StepForm(
        M,
        "decline",
        "Decline this optional migration",
        PARTNER,
        Withdrawal,
        awaited_only=False,
        button="Decline",
    ),
    StepForm(
        R, "root-cause", "Root cause", PARTNER, RemediationStep, ("root_cause",), only=("summary",)
    ),
    StepForm(R, "plan", "Remediation plan", PARTNER, RemediationStep, ("plan",), only=("summary",)),
    StepForm(
        R, "fixes", "Fixes made", PARTNER, RemediationStep, ("fixes",), only=("summary", "manifest")
    ),
    StepForm(
        R,
        "review",
        "Re-validation",
        frozenset({Role.SCO}),
        RemediationStep,
        ("revalidation",),
        only=("summary", "passed"),
    ),
)


def step_form(kind: ProcessKind, path: str) -> StepForm | None:
    return next((s for s in STEPS if s.kind is kind and s.path == path), None)


def _awaited_step(state: Mapping[str, Any]) -> str | None:
    step = state.get("step")
    return str(step).split(":", 1)[0] if step else None


def offered(
    kind: ProcessKind, state: Mapping[str, Any], role: Role, actor: str
) -> Sequence[StepForm]:
    """The forms to show `actor` on a case now: the step awaited of them, and what they may do
    at any time while the process is open (extend a deadline, withdraw, decline)."""
    if state.get("status") != ProcessStatus.ACTIVE.value:
        return []
    awaited = _awaited_step(state)
    actors = {str(a.get("actor")) for a in state.get("awaiting") or ()}
    out = []
    for form in STEPS:
        if form.kind is not kind or role not in form.roles:
            continue
        if form.awaited_only:
            if awaited not in form.answers:
                continue
            # SCO may recommend on a breach CGB decides; anyone else acts only when awaited.
            if actor not in actors and form.path != "monitoring-decision":
                continue
        elif not _open_now(form, state, awaited):
            continue
        out.append(form)
    return out


def _open_now(form: StepForm, state: Mapping[str, Any], awaited: str | None) -> bool:
    if form.path == "deadline":
        return awaited is not None
    if form.path == "withdraw":
        return state.get("release") is None
    if form.path == "decline":  # M-2.2: only an optional migration is declined
        return state.get("trigger_class") == TriggerClass.OPTIONAL.value
    return False
