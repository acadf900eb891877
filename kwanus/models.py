"""Payloads that cross Temporal: plain pydantic models (never SQLModel `table=True` objects),
carried by `pydantic_data_converter` on the worker, the API and the tests alike."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from policy.decisions import Decision, Finding
from policy.deprecation import DeprecationNotice
from policy.document import PolicyDocument, TierSpec
from policy.evidence import PlatformRef, Telemetry
from policy.forms import (
    ImplementationReport,
    IntegrationPlan,
    MigrationDocumentation,
    MigrationPlan,
    OutcomeReview,
    Release,
    RemediationStep,
    Rollout,
    Withdrawal,
)
from policy.grants import Grant
from policy.proposal import NewTier, Proposal
from policy.review import Review
from policy.risk import RiskAssessment
from policy.vocabulary import (
    Body,
    Category,
    ExpansionStage,
    MigrationStage,
    MigrationType,
    Outcome,
    PartnerStatus,
    ProcessKind,
    ProcessStatus,
    Role,
    Severity,
    Trigger,
    TriggerClass,
)
from policy.vote import Vote

T = TypeVar("T", bound=BaseModel)


def canonical_sha256(model: BaseModel) -> str:
    """sha256 of a model's canonical JSON (sorted keys, no whitespace): the same content gives
    the same hash on every machine, so it identifies what was submitted."""
    doc = model.model_dump(mode="json")
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class Awaiting(BaseModel):
    """Who the process waits on, for what, until when (P-3)."""

    actor: str
    action: str
    deadline: datetime | None = None


class ExpansionInput(BaseModel):
    expansion_id: str
    partner_id: str
    partner_tier: str = Field(description="The partner's tier at submission.")
    proposal: Proposal
    proposal_sha256: str
    policy: PolicyDocument
    submitted_by: str = Field(description="Id of the API token that submitted the proposal.")
    resume: ExpansionStatus | None = Field(
        default=None,
        description="Set only on a continued run: the state it picks up at monitoring.",
    )


class Actor(BaseModel):
    """Who sent a human step: the API puts the caller's token here, and the workflow's update
    validators check the role again (P-6), so a step sent straight to Temporal is judged the
    same way."""

    model_config = ConfigDict(frozen=True)

    role: Role
    token_id: str
    partner_id: str | None = None

    @property
    def name(self) -> str:
        return f"partner:{self.partner_id}" if self.role is Role.PARTNER else self.role.value


class Act(BaseModel, Generic[T]):
    """One human step: who, and what they sent (the input of every Update)."""

    actor: Actor
    body: T


class ReviewRecord(BaseModel):
    review: Review
    actor: str
    at: datetime


class VoteRecord(BaseModel):
    vote: Vote
    actor: str
    at: datetime


class DecisionRecord(BaseModel):
    outcome: Outcome
    reasons: list[str]
    rules: list[str]
    at: datetime


class StepRecord(BaseModel, Generic[T]):
    body: T
    actor: str
    at: datetime


class MonitoringCheck(BaseModel):
    at: datetime
    healthy: bool
    findings: list[Finding] = Field(default_factory=list)
    report: Telemetry | None = None


class Escalation(BaseModel):
    step: str
    at: datetime
    missing: list[str]
    to: str = "CGB"


class ExpansionStatus(BaseModel):
    """The full live state of one expansion: the `status` query and `GET /v1/expansions/{id}`."""

    id: str
    workflow_id: str
    partner_id: str
    category: Category
    stage: ExpansionStage
    status: ProcessStatus
    step: str | None = Field(default=None, description="The human step awaited now.")
    awaiting: list[Awaiting] = Field(default_factory=list)
    flags: list[Finding] = Field(default_factory=list)
    reviews: dict[Body, ReviewRecord] = Field(default_factory=dict)
    risk: RiskAssessment | None = None
    plans: dict[str, str] = Field(default_factory=dict)
    votes: dict[Body, VoteRecord] = Field(default_factory=dict)
    decision: DecisionRecord | None = None
    integration_plan: StepRecord[IntegrationPlan] | None = None
    implementation: StepRecord[ImplementationReport] | None = None
    release: StepRecord[Release] | None = None
    migration_id: str | None = None
    monitoring: list[MonitoringCheck] = Field(default_factory=list)
    monitoring_until: datetime | None = Field(
        default=None, description="When the monitoring period (stage 6) ends."
    )
    outcome_review: StepRecord[OutcomeReview] | None = None
    escalations: list[Escalation] = Field(default_factory=list)
    policy_version: int
    proposal_sha256: str
    submitted_at: datetime
    closed_at: datetime | None = None

    @property
    def approved(self) -> bool:
        return self.decision is not None and self.decision.outcome is Outcome.APPROVED

    @property
    def released(self) -> bool:
        return self.release is not None


class ReleaseInput(BaseModel):
    """The release's governance update (E-2.7): the approved grants added to what the partner
    holds at release time, exactly `removes` taken away, and the partner's declared
    compatibility (E-9.2) — applied by one activity with its audit event (before and after), so
    a retry applies it once. No tier (the tier migration moves it) and no platform row."""

    event: RecordEvent
    partner_id: str
    add: list[Grant]
    removes: list[str]
    release: str = Field(description="The released version.")
    declared: list[PlatformRef]


class GrantInput(BaseModel):
    """The release's update as runs released before E-2.7's decision sent it (`apply_grant`).
    Kept so those runs replay, and so one still in flight at a deploy is applied safely: it
    adds, and moves neither the tier nor a platform row."""

    event: RecordEvent
    partner_id: str
    tier: str
    capabilities: list[str]
    permissions: list[str]
    compatibility: list[PlatformRef]


class RecordEvent(BaseModel):
    """One governance event (P-4) and the projection it leaves, written in one transaction.
    `key` is the idempotency key (workflow ID + step): a retried activity writes it once."""

    key: str
    workflow_id: str
    process: ProcessKind
    process_id: str
    partner_id: str
    event: str
    actor: str
    at: datetime
    stage: str
    status: ProcessStatus
    next_deadline: datetime | None = None
    awaiting: list[Awaiting] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)
    policy_version: int
    state: dict[str, Any] | None = Field(
        default=None, description="The process's full status after this event (JSON)."
    )


class RiskInput(BaseModel):
    proposal: Proposal
    reviews: dict[Body, Review]
    plans: dict[str, str]
    policy: PolicyDocument


class TelemetryCheckInput(BaseModel):
    partner_id: str
    since: datetime
    until: datetime
    policy: PolicyDocument


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


class Fallback(BaseModel):
    """M-6: fallback APIs and workflows stay; permissions are read-only, never wider."""

    active: bool
    until: datetime | None = None
    permissions: list[str] = Field(default_factory=list)


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
    implementation: StepRecord[ImplementationReport] | None = None
    documentation: StepRecord[MigrationDocumentation] | None = None
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
    policy_version: int
    started_at: datetime
    closed_at: datetime | None = None


class RemediationLink(BaseModel):
    """A remediation a failed validation opened, as its migration sees it."""

    id: str
    workflow_id: str
    severity: Severity
    status: ProcessStatus
    deadline: datetime | None = None


class RemediationClosed(BaseModel):
    """Signal from a remediation to the process that opened it, when it closes."""

    remediation_id: str
    status: ProcessStatus
    escalation_migration: str | None = None


class ValidationResult(BaseModel):
    """One of the four checks of M-8.1, as recorded."""

    check: str
    passed: bool
    findings: list[Finding] = Field(default_factory=list)
    at: datetime


class MatrixInput(BaseModel):
    """A rollout's compatibility as runs rolled out before E-9.2's decision sent it
    (`update_matrix`): the partner's own, never the platform's rows."""

    event: RecordEvent
    entries: list[PlatformRef]


class NoticedInput(BaseModel):
    """A deprecation notice on record, and its version marked deprecated in the platform's
    matrix (M-5.1), in one transaction."""

    event: RecordEvent
    notice: DeprecationNotice


class NewTierInput(BaseModel):
    """E-7.3: an approved new tier, added to the policy's catalogue at its release."""

    event: RecordEvent
    new_tier: NewTier


class TierEvidenceInput(BaseModel):
    partner_id: str
    at: datetime


class ValidationInput(BaseModel):
    check: str
    partner_id: str
    target: dict[str, str]
    policy: PolicyDocument
    at: datetime


class LifecycleInput(BaseModel):
    """M-4.7: the partner's lifecycle record after a completed migration (target applied)."""

    event: RecordEvent
    partner_id: str
    target: dict[str, str]


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


class RemediationInput(BaseModel):
    remediation_id: str
    partner_id: str
    partner_tier: str
    severity: Severity
    kind: str
    description: str
    opened_at: datetime = Field(description="When the violation was found: windows count from it.")
    policy: PolicyDocument
    origin: str | None = None
    report_to: str | None = Field(
        default=None, description="Workflow id signalled (`remediation_closed`) at the close."
    )
    opened_by: str


class RemediationStatus(BaseModel):
    id: str
    workflow_id: str
    partner_id: str
    severity: Severity
    kind: str
    status: ProcessStatus
    stage: str
    step: str | None = None
    awaiting: list[Awaiting] = Field(default_factory=list)
    deadline: datetime | None = None
    restricted: bool = False
    steps: dict[str, StepRecord[RemediationStep]] = Field(default_factory=dict)
    escalation_migration: str | None = None
    origin: str | None = None
    policy_version: int
    opened_at: datetime
    closed_at: datetime | None = None


class PartnerStatusInput(BaseModel):
    event: RecordEvent
    partner_id: str
    status: PartnerStatus


class DeprecationInput(BaseModel):
    notice_id: str
    notice: DeprecationNotice
    policy: PolicyDocument
    requested_by: str
    batch_size: int = Field(default=200, ge=1, le=1000)
    # carried across continue-as-new
    after: str | None = None
    progress: DeprecationProgress | None = None


class DeprecationBatch(BaseModel):
    """One page of partners (keyset after `after`) for the fan-out activity."""

    notice_id: str
    notice: DeprecationNotice
    policy: PolicyDocument
    requested_by: str
    origin: str
    after: str | None
    limit: int


class BatchResult(BaseModel):
    scanned: int
    affected: int
    started: int
    last: str | None = Field(description="The last partner id scanned; None when none remain.")


class DeprecationProgress(BaseModel):
    scanned: int = 0
    affected: int = 0
    started: int = 0
    batches: int = 0


class DeprecationStatus(BaseModel):
    """`GET /v1/deprecations/{id}`: the notice and how far its fan-out has gone."""

    id: str
    workflow_id: str
    partner_id: str = ""
    notice: DeprecationNotice
    stage: str
    status: ProcessStatus
    progress: DeprecationProgress
    migration_id_prefix: str
    policy_version: int
    started_at: datetime
    closed_at: datetime | None = None


# --- annual stewardship (E-13.1, M-10.1) ----------------------------------------------------


class StageTime(BaseModel):
    stage: str
    processes: int
    mean_days: float


class ExpansionOutcomes(BaseModel):
    """E-13.1 review of expansion outcomes over the period."""

    total: int
    by_status: dict[str, int]
    by_category: dict[str, int]
    time_per_stage: list[StageTime]
    deadlines_missed: int
    escalations: int


class FallbackHeld(BaseModel):
    migration_id: str
    partner_id: str
    until: datetime | None


class MigrationReview(BaseModel):
    """M-10.1 migration review: what completed, what is overdue, which fallbacks are held."""

    total: int
    completed: int
    overdue: list[str]
    fallbacks_active: list[FallbackHeld]


class MatrixProposal(BaseModel):
    """E-13.1 / M-10.1 compatibility update: a proposed change, with why."""

    kind: str
    name: str
    version: str
    proposal: str
    reason: str


class PartnerTrend(BaseModel):
    partner_id: str
    reasons: list[str]


class StewardshipFigures(BaseModel):
    """Everything the annual review computes from the store, for the bodies to sign off."""

    period_start: datetime
    period_end: datetime
    expansion_outcomes: ExpansionOutcomes
    migration_review: MigrationReview
    matrix_proposals: list[MatrixProposal]
    unlisted_runtimes: list[str] = Field(description="Partners on runtimes the matrix lacks.")
    lifecycle: dict[str, dict[str, int]] = Field(
        description="Partners by tier, OS version, API version and status."
    )
    sustainability: list[PartnerTrend]


class StewardshipInput(BaseModel):
    report_id: str = Field(
        default="", description="Empty for scheduled runs: the id is taken from the workflow id."
    )
    policy: PolicyDocument | None = Field(
        default=None, description="None for scheduled runs: the version in force is read at start."
    )
    requested_by: str = "schedule"


class CompileInput(BaseModel):
    report_id: str
    workflow_id: str
    at: datetime
    policy: PolicyDocument


class Signoff(BaseModel):
    notes: str
    actor: str
    at: datetime


class StewardshipStatus(BaseModel):
    """`GET /v1/stewardship/reports/{id}`: the figures and who has signed them off."""

    id: str
    workflow_id: str
    partner_id: str = ""
    stage: str
    status: ProcessStatus
    step: str | None = None
    awaiting: list[Awaiting] = Field(default_factory=list)
    deadline: datetime | None = None
    figures: StewardshipFigures | None = None
    signoffs: dict[Body, Signoff] = Field(default_factory=dict)
    escalated: bool = False
    policy_version: int
    started_at: datetime
    closed_at: datetime | None = None


# Models that name others defined further down (the status a continued run resumes from, the
# fan-out's progress) are completed once every model exists.
for _model in (ExpansionInput, MigrationInput, DeprecationInput):
    _model.model_rebuild()
