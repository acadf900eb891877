"""A migration's payloads (Migration Playbook): its input and live state, and what its
activities take."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from kwanus.models.common import Awaiting, MonitoringCheck, RecordEvent, StepRecord
from policy.decisions import Decision, Finding
from policy.document import PolicyDocument, TierSpec
from policy.evidence import PlatformRef
from policy.forms import (
    FallbackDecision,
    MigrationDocumentation,
    MigrationImplementation,
    MigrationPlan,
    Rollout,
    Withdrawal,
)
from policy.grants import Grant
from policy.manifest import Manifest
from policy.vocabulary import (
    MigrationStage,
    MigrationType,
    ProcessStatus,
    Severity,
    Trigger,
    TriggerClass,
)


class WithTier(BaseModel):
    """What a category-B release's migration carries with the tier it moves, applied at its
    rollout: the tier the proposal was judged on (E-7.1: the rise is from there only), the
    grants and removals that come with the tier (E-2.7, E-7.4), and a new tier as the proposal
    defined it (E-7.3: the rise lands on that tier only)."""

    from_tier: str
    grants: list[Grant] = Field(default_factory=list)
    removes: list[str] = Field(default_factory=list)
    spec: TierSpec | None = None


class TierChange(BaseModel):
    """What a tier migration's rollout did to the tier (M-4.5, E-7.1, E-7.2): moved it, or not,
    with the reason (the tier may have moved meanwhile)."""

    before: str
    target: str
    applied: bool
    reasons: list[str] = Field(default_factory=list)
    withheld: list[str] = Field(
        default_factory=list, description="Grants that came with the tier and were not granted."
    )


class MigrationDecision(BaseModel):
    """How a migration's outcome was reached, when not by the partner's steps (M-2.3)."""

    outcome: str = Field(description="`enforced`: the forced target applied at the window's end.")
    reasons: list[str] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)
    at: datetime


class RolloutInput(BaseModel):
    """A migration's rollout takes effect in one activity (M-4.5): its event, the partner's
    declared compatibility (E-9.2), and for a tier migration the tier (judged again against the
    tier in effect now, E-7.1 / E-7.2) with the grants that come with it."""

    event: RecordEvent
    partner_id: str
    release: str
    declared: list[PlatformRef]
    tier: str | None = Field(default=None, description="A tier migration's target tier.")
    trigger: Trigger
    subtype: str
    origin: str | None = None
    with_tier: WithTier | None = None
    type_: MigrationType | None = Field(
        default=None, description="The migration's type (a forced permission reduction's effect)."
    )
    enforced: bool = Field(
        default=False,
        description="The forced outcome applied at the window's end, the partner not having "
        "rolled out (M-2.3): no release, nothing declared.",
    )


class Fallback(BaseModel):
    """M-6: fallback APIs and workflows stay; permissions are read-only, never wider."""

    active: bool
    until: datetime | None = None
    permissions: list[str] = Field(default_factory=list)


class ValidationResult(BaseModel):
    """One of the four checks of M-8.1, as recorded."""

    check: str
    passed: bool
    findings: list[Finding] = Field(default_factory=list)
    at: datetime
    moved_off: list[str] = Field(
        default_factory=list,
        description="What the manifest moves off, as telemetry names it (`api:2.1`): monitoring "
        "watches that no calls reach it (M-4.6).",
    )


class RemediationLink(BaseModel):
    """A remediation a failed validation opened, as its migration sees it."""

    id: str
    workflow_id: str
    severity: Severity
    status: ProcessStatus
    deadline: datetime | None = None


class MigrationStatus(BaseModel):
    """The full live state of one migration: the `status` query and `GET /v1/migrations/{id}`."""

    id: str
    workflow_id: str
    partner_id: str
    trigger: Trigger
    trigger_class: TriggerClass
    type_: MigrationType
    subtype: str
    target: dict[str, str]
    stage: MigrationStage
    status: ProcessStatus
    step: str | None = None
    awaiting: list[Awaiting] = Field(default_factory=list)
    window_end: datetime | None = None
    fallback: Fallback = Fallback(active=False)
    plan: StepRecord[MigrationPlan] | None = None
    implementation: StepRecord[MigrationImplementation] | None = None
    documentation: StepRecord[MigrationDocumentation] | None = None
    manifest: Manifest | None = Field(
        default=None,
        description="The manifest validation inspects (M-8.1): the implementation's, or the "
        "corrected one of a remediation's fixes; registered as the partner's at completion.",
    )
    moved_at: datetime | None = Field(
        default=None,
        description="When the partner last said it had moved: its implementation, or the fixes "
        "of a failed validation's remediation. Telemetry from then on is validated (M-8.1).",
    )
    validation: dict[str, ValidationResult] = Field(default_factory=dict)
    rollout: StepRecord[Rollout] | None = None
    monitoring: list[MonitoringCheck] = Field(default_factory=list)
    declined: StepRecord[Withdrawal] | None = None
    remediations: list[RemediationLink] = Field(
        default_factory=list, description="Remediations opened by failed validations (M-8.2)."
    )
    origin: str | None = None
    tier_change: TierChange | None = Field(
        default=None, description="A tier migration's move at its rollout (M-4.5)."
    )
    decision: MigrationDecision | None = Field(
        default=None, description="`enforced` when the forced target applied at the window's end."
    )
    fallback_decisions: list[StepRecord[FallbackDecision]] = Field(
        default_factory=list,
        description="TSC's or CGB's decisions on a fallback unhealthy at its end (M-4.7).",
    )
    policy_version: int
    started_at: datetime
    closed_at: datetime | None = None


class Noticed(BaseModel):
    """A notice already on record (M-4.1): when it was given and the fallback it activated."""

    at: datetime
    permissions: list[str]


class MigrationInput(BaseModel):
    migration_id: str
    partner_id: str
    trigger: Trigger
    type_: MigrationType
    subtype: str
    target: dict[str, str] = Field(default_factory=dict)
    fallback_months: int
    policy: PolicyDocument
    origin: str | None = Field(default=None, description="Workflow id of what started it.")
    requested_by: str
    with_tier: WithTier | None = Field(
        default=None, description="A category-B release's migration: what comes with its tier."
    )
    resume: MigrationStatus | None = Field(
        default=None,
        description="Set only on a continued run: the state it picks up at monitoring.",
    )
    noticed: Noticed | None = Field(
        default=None,
        description="Set by a deprecation's fan-out, which recorded this migration's notice, its "
        "move to Plan and its plan window with its page (kwanus.notice): when, and the "
        "read-only fallback's permissions. The run starts at its plan window.",
    )


class MatrixInput(BaseModel):
    """A rollout's compatibility as runs rolled out before E-9.2's decision sent it
    (`update_matrix`): the partner's own, never the platform's rows."""

    event: RecordEvent
    entries: list[PlatformRef]


class ValidationInput(BaseModel):
    """One check of M-8.1 on the manifest the partner shipped, against the migration's target
    and what the partner will hold after it. Runs scheduled before manifests existed send
    none of the optional fields: their registered manifest is judged with the target applied."""

    check: str
    partner_id: str
    target: dict[str, str]
    policy: PolicyDocument
    at: datetime
    manifest: Manifest | None = None
    since: datetime | None = Field(
        default=None, description="When the partner reported its implementation (telemetry)."
    )
    trigger: Trigger | None = None
    type_: MigrationType | None = None
    subtype: str = ""
    with_tier: WithTier | None = None


class LifecycleInput(BaseModel):
    """M-4.7: the partner's lifecycle record after a completed migration (target applied)."""

    event: RecordEvent
    partner_id: str
    target: dict[str, str]
    manifest: Manifest | None = Field(
        default=None, description="The validated manifest, registered as the partner's."
    )
    validated_at: datetime | None = Field(
        default=None, description="When the manifest passed validation (its last attempt)."
    )
    enforced_at: datetime | None = Field(
        default=None,
        description="When a forced target applied without a validated manifest (M-2.3): the "
        "registered manifest moved to the target is no older than that.",
    )


class Notification(BaseModel):
    key: str
    partner_id: str
    process_id: str
    kind: str
    message: str
    at: datetime


class NoticeInput(BaseModel):
    """A migration's notice in one activity (M-4.1): notify the partner, read what it holds,
    activate the read-only fallback (M-6.1, M-6.3) and record `notice` and the move to Plan in
    one transaction. The events are the workflow's; only the fallback's permissions, which
    depend on the partner's grants, are the activity's to fill in (`recorded`)."""

    note: Notification
    partner_id: str
    state: MigrationStatus = Field(
        description="The run at its notice: window defined, fallback active until its end."
    )
    notice: RecordEvent = Field(description="`notice`, without its state snapshot.")
    plan: RecordEvent = Field(description="`stage_changed` to Plan, without its snapshot.")

    def recorded(self, permissions: list[str]) -> list[RecordEvent]:
        """Both events as the workflow records them step by step: the fallback holds
        `permissions`; each carries the run's state after it (Notice, then Plan with no step
        and nobody awaited)."""
        fallback = self.state.fallback.model_copy(update={"permissions": permissions})
        noticed = self.state.model_copy(update={"fallback": fallback})
        planned = noticed.model_copy(
            update={"stage": MigrationStage.PLAN, "step": None, "awaiting": []}
        )
        data = {**self.notice.data, "fallback_permissions": permissions}
        return [
            self.notice.model_copy(update={"data": data, "state": noticed.model_dump(mode="json")}),
            self.plan.model_copy(update={"state": planned.model_dump(mode="json")}),
        ]


class NoticeResult(BaseModel):
    permissions: list[str] = Field(description="The fallback's read-only permissions (M-6.1).")
    refused: Decision = Field(
        default_factory=Decision,
        description="Findings against the fallback (M-6.1, M-6.3); nothing was recorded then.",
    )
