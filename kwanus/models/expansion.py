"""An expansion's payloads (Expansion Protocol): its input and live state, and what its
activities take."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from kwanus.models.common import Awaiting, MonitoringCheck, RecordEvent, StepRecord
from policy.decisions import Finding
from policy.document import PolicyDocument
from policy.evidence import PlatformRef
from policy.forms import (
    ImplementationReport,
    IntegrationPlan,
    MonitoringDecision,
    OutcomeReview,
    Release,
)
from policy.grants import Grant
from policy.proposal import NewTier, Proposal
from policy.review import Review
from policy.risk import RiskAssessment
from policy.vocabulary import Body, Category, ExpansionStage, Outcome, ProcessStatus
from policy.vote import Vote


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
    policy_change: dict[str, Any] | None = Field(
        default=None, description="A category-D proposal's policy change (E-3.4)."
    )
    policy_published: int | None = Field(
        default=None, description="The policy version its release published (E-3.4)."
    )
    monitoring_decisions: list[StepRecord[MonitoringDecision]] = Field(
        default_factory=list, description="CGB's decisions on monitoring breaches (E-12.1)."
    )
    monitoring_recommendations: list[StepRecord[MonitoringDecision]] = Field(
        default_factory=list, description="SCO's recommendations on them, for CGB."
    )
    policy_version: int
    proposal_sha256: str
    proposal: Proposal | None = Field(
        default=None,
        description="What was submitted (E-2.1), for the bodies that review it; absent for "
        "proposals submitted before it was kept with the state.",
    )
    submitted_at: datetime
    closed_at: datetime | None = None

    @property
    def approved(self) -> bool:
        return self.decision is not None and self.decision.outcome is Outcome.APPROVED

    @property
    def released(self) -> bool:
        return self.release is not None


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


class RiskInput(BaseModel):
    proposal: Proposal
    reviews: dict[Body, Review]
    plans: dict[str, str]
    policy: PolicyDocument


class PolicyChangeInput(BaseModel):
    """E-3.4: a category-D release's policy change, published as a new policy version."""

    event: RecordEvent
    change: dict[str, Any]


class NewTierInput(BaseModel):
    """E-7.3: an approved new tier, added to the policy's catalogue at its release."""

    event: RecordEvent
    new_tier: NewTier


class TierEvidenceInput(BaseModel):
    partner_id: str
    at: datetime
