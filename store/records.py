"""Decision records: one exportable JSON document per process — what was decided, by whom, under
which rules and policy version — assembled from the store alone (the projection's last state and
the append-only audit log), so it is complete long after the Temporal history is gone."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import Session

from policy.vocabulary import ProcessKind
from store import repo

SYSTEM = "system"  # how the audit log names the process's own steps
# What each kind's record carries from the process's state, besides the header.
DECIDED: dict[ProcessKind, tuple[str, ...]] = {
    ProcessKind.EXPANSION: (
        "category",
        "flags",
        "reviews",
        "risk",
        "plans",
        "votes",
        "decision",
        "escalations",
        "release",
        "migration_id",
        "outcome_review",
    ),
    ProcessKind.MIGRATION: (
        "trigger",
        "trigger_class",
        "type_",
        "subtype",
        "target",
        "window_end",
        "fallback",
        "validation",
        "remediations",
        "rollout",
        "declined",
        "origin",
    ),
    ProcessKind.REMEDIATION: (
        "severity",
        "kind",
        "deadline",
        "restricted",
        "steps",
        "escalation_migration",
        "origin",
    ),
}
# The content the record's sha256 identifies: what was proposed or requested.
SUBJECT: dict[ProcessKind, tuple[str, ...]] = {
    ProcessKind.EXPANSION: ("proposal_sha256",),
    ProcessKind.MIGRATION: ("trigger", "type_", "subtype", "target", "plan"),
    ProcessKind.REMEDIATION: ("severity", "kind", "opened_at", "origin"),
}


class RecordedEvent(BaseModel):
    at: datetime
    event: str
    actor: str
    stage: str
    rules: list[str]
    data: dict[str, Any]


class ProcessRecord(BaseModel):
    """`GET /v1/{expansions|migrations|remediations}/{id}/decision-record`."""

    kind: ProcessKind
    id: str
    workflow_id: str
    partner_id: str
    status: str
    stage: str
    policy_version: int
    subject_sha256: str = Field(
        description="sha256 of the canonical proposal (expansions) or request and plan."
    )
    opened_at: datetime | None
    closed_at: datetime | None
    decided: dict[str, Any] = Field(
        description="Reviews, risk, votes with rationale, decision with rules — by kind."
    )
    rules: list[str] = Field(description="Every rule ID an event of this process names.")
    actors: list[str] = Field(
        description="Everyone who acted (not the process itself), in order of first action."
    )
    events: list[RecordedEvent]


def _sha256(doc: Any) -> str:
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def decision_record(*, session: Session, workflow_id: str) -> ProcessRecord | None:
    row = repo.get_process(session=session, workflow_id=workflow_id)
    if row is None:
        return None
    kind = ProcessKind(row.kind)
    state: dict[str, Any] = row.state or {}
    subject = {k: state.get(k) for k in SUBJECT.get(kind, ())}
    sha = (
        str(subject["proposal_sha256"])
        if kind is ProcessKind.EXPANSION and subject.get("proposal_sha256")
        else _sha256(subject)
    )
    events = [
        RecordedEvent(
            at=repo.as_utc(e.at) or e.at,
            event=e.event,
            actor=e.actor,
            stage=e.stage,
            rules=list(e.rules),
            data=dict(e.data),
        )
        for e in repo.audit_events(session=session, workflow_id=workflow_id)
    ]
    opened = state.get("submitted_at") or state.get("started_at") or state.get("opened_at")
    return ProcessRecord(
        kind=kind,
        id=row.process_id,
        workflow_id=row.workflow_id,
        partner_id=row.partner_id,
        status=row.status,
        stage=row.stage,
        policy_version=row.policy_version,
        subject_sha256=sha,
        opened_at=opened,
        closed_at=state.get("closed_at"),
        decided={k: state[k] for k in DECIDED.get(kind, ()) if k in state},
        rules=sorted({r for e in events for r in e.rules}),
        actors=list(dict.fromkeys(e.actor for e in events if e.actor != SYSTEM)),
        events=events,
    )
