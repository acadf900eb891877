"""Payloads that cross Temporal: plain pydantic models (never SQLModel `table=True` objects),
carried by `pydantic_data_converter` on the worker, the API and the tests alike."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from policy.decisions import Finding
from policy.document import PolicyDocument
from policy.proposal import Proposal
from policy.vocabulary import Category, ExpansionStage, ProcessKind, ProcessStatus


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
    proposal: Proposal
    proposal_sha256: str
    policy: PolicyDocument
    submitted_by: str = Field(description="Id of the API token that submitted the proposal.")


class ExpansionStatus(BaseModel):
    """The full live state of one expansion: the `status` query and `GET /v1/expansions/{id}`."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    workflow_id: str
    partner_id: str
    category: Category
    stage: ExpansionStage
    status: ProcessStatus
    awaiting: list[Awaiting] = Field(default_factory=list)
    flags: list[Finding] = Field(default_factory=list)
    reviews: dict[str, Any] = Field(default_factory=dict)
    votes: dict[str, Any] = Field(default_factory=dict)
    risk: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    policy_version: int
    proposal_sha256: str
    submitted_at: datetime


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
