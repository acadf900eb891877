"""A remediation's payloads (M-9): its input and live state, its close signalled to the process
that opened it, and the partner status it sets."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from kwanus.models.common import Awaiting, RecordEvent, StepRecord
from policy.document import PolicyDocument
from policy.forms import RemediationStep
from policy.manifest import Manifest
from policy.vocabulary import PartnerStatus, ProcessStatus, Severity


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
    description: str = Field(
        default="", description="What it remediates: the violation, or each failed check."
    )
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


class RemediationClosed(BaseModel):
    """Signal from a remediation to the process that opened it, when it closes."""

    remediation_id: str
    status: ProcessStatus
    escalation_migration: str | None = None
    manifest: Manifest | None = Field(
        default=None, description="The corrected manifest its fixes carried (M-8.1), if any."
    )
    fixed_at: datetime | None = Field(default=None, description="When its fixes were taken.")


class PartnerStatusInput(BaseModel):
    event: RecordEvent
    partner_id: str
    status: PartnerStatus
