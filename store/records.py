"""Decision records: one exportable JSON document per process — what was decided, by whom, under
which rules and policy version — assembled from the store alone (the projection's last state and
the append-only audit log), so it is complete long after the Temporal history is gone."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, Field
from pydantic_core import to_jsonable_python
from sqlmodel import Session

from kwanus import contract
from policy.vocabulary import ProcessKind
from store import repo
from store.tables import Process

SYSTEM = "system"  # how the audit log names the process's own steps


class Parts(NamedTuple):
    """What a kind's record takes from its process's state, field by field."""

    decided: dict[str, Any]  # reviews, risk, votes, decision... by kind
    subject: dict[str, Any]  # what was proposed or requested: its sha256 identifies it
    opened_at: datetime | None
    closed_at: datetime | None


def parts(row: Process) -> Parts:
    """The record's parts from the state the projection keeps, read back as the process's own
    status model — a renamed status field fails type checking here, never drops silently."""
    if (e := repo.state_of(row, contract.EXPANSION)) is not None:
        decided: dict[str, Any] = {
            "category": e.category,
            "flags": e.flags,
            "reviews": e.reviews,
            "risk": e.risk,
            "plans": e.plans,
            "votes": e.votes,
            "decision": e.decision,
            "escalations": e.escalations,
            "release": e.release,
            "migration_id": e.migration_id,
            "outcome_review": e.outcome_review,
        }
        return Parts(decided, {"proposal_sha256": e.proposal_sha256}, e.submitted_at, e.closed_at)
    if (m := repo.state_of(row, contract.MIGRATION)) is not None:
        decided = {
            "trigger": m.trigger,
            "trigger_class": m.trigger_class,
            "type_": m.type_,
            "subtype": m.subtype,
            "target": m.target,
            "window_end": m.window_end,
            "fallback": m.fallback,
            "validation": m.validation,
            "remediations": m.remediations,
            "rollout": m.rollout,
            "declined": m.declined,
            "decision": m.decision,
            "origin": m.origin,
        }
        subject: dict[str, Any] = {
            "trigger": m.trigger,
            "type_": m.type_,
            "subtype": m.subtype,
            "target": m.target,
            "plan": m.plan,
        }
        return Parts(decided, subject, m.started_at, m.closed_at)
    if (r := repo.state_of(row, contract.REMEDIATION)) is not None:
        decided = {
            "severity": r.severity,
            "kind": r.kind,
            "deadline": r.deadline,
            "restricted": r.restricted,
            "steps": r.steps,
            "escalation_migration": r.escalation_migration,
            "origin": r.origin,
        }
        subject = {
            "severity": r.severity,
            "kind": r.kind,
            "opened_at": r.opened_at,
            "origin": r.origin,
        }
        return Parts(decided, subject, r.opened_at, r.closed_at)
    if (s := repo.state_of(row, contract.STEWARDSHIP)) is not None:
        return Parts({}, {}, s.started_at, s.closed_at)
    if (d := repo.state_of(row, contract.DEPRECATION)) is not None:
        return Parts({}, {}, d.started_at, d.closed_at)
    return Parts({}, {}, None, None)


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


def decision_record(*, session: Session, row: Process) -> ProcessRecord:
    """The record of the process `row` projects: its state's parts and its audit events."""
    kind = ProcessKind(row.kind)
    decided, subject, opened_at, closed_at = parts(row)
    json_subject = to_jsonable_python(subject)
    sha = (
        e.proposal_sha256
        if (e := repo.state_of(row, contract.EXPANSION)) is not None
        else _sha256(json_subject)
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
        for e in repo.audit_events(session=session, workflow_id=row.workflow_id)
    ]
    return ProcessRecord(
        kind=kind,
        id=row.process_id,
        workflow_id=row.workflow_id,
        partner_id=row.partner_id,
        status=row.status,
        stage=row.stage,
        policy_version=row.policy_version,
        subject_sha256=sha,
        opened_at=opened_at,
        closed_at=closed_at,
        decided=to_jsonable_python(decided),
        rules=sorted({r for e in events for r in e.rules}),
        actors=list(dict.fromkeys(e.actor for e in events if e.actor != SYSTEM)),
        events=events,
    )
