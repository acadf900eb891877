"""The annual stewardship review's payloads (E-13.1, M-10.1): the figures computed from the store
and the bodies' sign-offs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from kwanus.models.common import Awaiting
from policy.document import PolicyDocument
from policy.vocabulary import Body, ProcessStatus


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
