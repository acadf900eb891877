"""A deprecation notice's payloads (M-2.1, M-5.1): the notice, its fan-out in pages, and how far
it has gone."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from kwanus.models.common import RecordEvent
from policy.deprecation import DeprecationNotice
from policy.document import PolicyDocument
from policy.vocabulary import ProcessStatus


class NoticedInput(BaseModel):
    """A deprecation notice on record, and its version marked deprecated in the platform's
    matrix (M-5.1), in one transaction."""

    event: RecordEvent
    notice: DeprecationNotice


class DeprecationProgress(BaseModel):
    scanned: int = 0
    affected: int = 0
    started: int = 0
    batches: int = 0


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
