"""Who a process awaits and who acted, the step and event records every process keeps, and the
monitoring checks expansions and migrations share."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from policy.decisions import Finding
from policy.document import PolicyDocument
from policy.evidence import Telemetry
from policy.vocabulary import ProcessKind, ProcessStatus, Role

T = TypeVar("T", bound=BaseModel)


class Awaiting(BaseModel):
    """Who the process waits on, for what, until when (P-3). `action` names the step, then,
    after a `:`, what the step lists of itself now ("submit plans: fallback_plan", the
    findings a decision is on): `step` is the same while the step stays open."""

    actor: str
    action: str
    deadline: datetime | None = None

    @property
    def step(self) -> str:
        return step_of(self.action)


def step_of(action: str) -> str:
    """The step an awaited action is (Awaiting.step), from the action's text as stored."""
    return action.split(":", 1)[0]


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


class StepRecord(BaseModel, Generic[T]):
    body: T
    actor: str
    at: datetime


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
    seq: int = Field(
        default=0,
        description="The event's number within its run: of two events of the same workflow "
        "time, the projection keeps the later one's state (events in flight commit in any order).",
    )


class MonitoringCheck(BaseModel):
    at: datetime
    healthy: bool
    findings: list[Finding] = Field(default_factory=list)
    report: Telemetry | None = None


class TelemetryCheckInput(BaseModel):
    partner_id: str
    since: datetime
    until: datetime
    policy: PolicyDocument
    moved_off: list[str] = Field(
        default_factory=list,
        description="A migration's: what it moves off (`api:2.1`), which no call may reach.",
    )
    moves_to: dict[str, str] = Field(
        default_factory=dict,
        description="A forced migration's target applied without a validated manifest: what "
        "the registered manifest moves off to reach it is watched as `moved_off` is.",
    )
