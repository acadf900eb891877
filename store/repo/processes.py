"""Processes and the audit log (written only by workflow activities): each event appended to the
hash chain with its projection and inbox, once per key (P-4); the reads of both."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import and_, or_
from sqlalchemy.orm import defer
from sqlmodel import Session, col, delete, func, select

from kwanus import contract
from kwanus.contract import ProcessType
from kwanus.models.common import RecordEvent, step_of
from kwanus.models.expansion import ExpansionStatus
from policy.vocabulary import ProcessKind, ProcessStatus
from store import audit
from store.repo.common import as_utc, insert_for
from store.repo.notifications import notify_event, notify_events
from store.tables import AuditEvent, PendingAction, Process, utcnow

S = TypeVar("S", bound=BaseModel)


def _audit_row(event: RecordEvent) -> dict[str, Any]:
    return {
        "key": event.key,
        "at": event.at,
        "recorded_at": utcnow(),
        "workflow_id": event.workflow_id,
        "process": event.process.value,
        "process_id": event.process_id,
        "partner_id": event.partner_id,
        "event": event.event,
        "actor": event.actor,
        "stage": event.stage,
        "rules": list(event.rules),
        "data": event.data,
    }


def _record_once(session: Session, event: RecordEvent) -> bool:
    """Append the event's row to the audit chain — and, when it carries its process's state,
    apply the projection (P-8: every read is served from it, so no event of a run may leave it
    behind) — unless its key is taken (then roll back and say so): a retried activity changes
    nothing. Uncommitted."""
    appended = _record(session, event) if event.state is not None else _append(session, event)
    if not appended:
        session.rollback()
    return appended


def _append(session: Session, event: RecordEvent) -> bool:
    """Append the event's row to the audit chain, with the notifications it makes (P-7), unless
    its key is taken; uncommitted."""
    if not audit.append(session, _audit_row(event)):
        return False
    notify_event(session, event)
    return True


def _record(session: Session, event: RecordEvent) -> bool:
    """Append the audit row and apply its projection, uncommitted; False (and nothing written)
    if the key is taken."""
    if not _append(session, event):
        return False
    _project(session, event)
    return True


def _project(session: Session, event: RecordEvent) -> None:
    """Apply the event's projection — the process's state, and who it awaits (the inbox) — when
    it is the latest of its process; uncommitted."""
    insert = insert_for(session)
    awaiting = [a.model_dump(mode="json") for a in event.awaiting]
    projection = insert(Process).values(
        workflow_id=event.workflow_id,
        kind=event.process,
        process_id=event.process_id,
        partner_id=event.partner_id,
        stage=event.stage,
        status=event.status,
        next_deadline=event.next_deadline,
        awaiting=awaiting,
        policy_version=event.policy_version,
        state=event.state,
        created_at=event.at,
        updated_at=event.at,
        seq=event.seq,
    )
    table = Process.__table__.c  # type: ignore[attr-defined]
    excluded = projection.excluded
    projection = projection.on_conflict_do_update(
        index_elements=["workflow_id"],
        set_={
            "stage": excluded.stage,
            "status": excluded.status,
            "next_deadline": excluded.next_deadline,
            "awaiting": excluded.awaiting,
            "state": excluded.state,
            "updated_at": excluded.updated_at,
            "seq": excluded.seq,
        },
        # Events of one run can commit out of order (two votes taken in one workflow task, an
        # Update's record and the run's own, in flight at once): the projection keeps the state
        # of the latest event — in workflow time, then in the run's own count (P-8: every read
        # is served from here, so it never goes back) — and a closed process stays closed: an
        # event of the same instant (a review accepted with the withdrawal) landing after the
        # closing one cannot reopen it.
        where=(
            (table.updated_at < excluded.updated_at)
            | ((table.updated_at == excluded.updated_at) & (table.seq <= excluded.seq))
        )
        & (
            (table.status == ProcessStatus.ACTIVE.value)
            | (excluded.status != ProcessStatus.ACTIVE.value)
        ),
    ).returning(table.workflow_id)
    if session.execute(projection).first() is None:
        return  # on record in the log; the projection already shows a later event
    # The inbox: exactly who this process awaits now; a step still open keeps its `since`.
    mine = col(PendingAction.workflow_id) == event.workflow_id
    waiting = {
        (actor, step_of(action)): as_utc(since) if since else event.at
        for actor, action, since in session.execute(
            select(PendingAction.actor, PendingAction.action, PendingAction.since).where(mine)
        )
    }
    session.execute(delete(PendingAction).where(mine))
    if event.status is ProcessStatus.ACTIVE:
        session.add_all(
            PendingAction(
                workflow_id=event.workflow_id,
                kind=event.process,
                process_id=event.process_id,
                partner_id=event.partner_id,
                stage=event.stage,
                actor=a.actor,
                action=a.action,
                deadline=a.deadline,
                since=waiting.get((a.actor, a.step), event.at),
            )
            for a in event.awaiting
        )


def _first_time(session: Session, key: str) -> bool:
    """Lock the audit chain's head for the transaction (audit.lock) and say whether `key` is
    still free; if it is taken — a retried activity — roll back: nothing more to do (P-4)."""
    audit.lock(session)
    if audit.recorded(session, key):
        session.rollback()
        return False
    return True


def record_event(*, session: Session, event: RecordEvent) -> bool:
    """Append the audit row and apply the projection in one transaction. Returns whether this call
    wrote it: a retried activity finds the key taken and changes nothing (P-4)."""
    (written,) = record_events(session=session, events=[event])
    return written


def record_events(
    *, session: Session, events: Sequence[RecordEvent], latest_only: bool = False
) -> list[bool]:
    """Several events, in order, each with its projection, in one transaction (a process's
    latest event's projection stands; `latest_only` applies only that one — several processes'
    events at once, a fan-out's page): one lock and one insert of the audit chain for them all.
    Returns, per event, whether this call wrote it: a key already taken is skipped, so a
    retried activity writes each row once (P-4)."""
    written = audit.append_all(session, [_audit_row(event) for event in events])
    new = [event for event, appended in zip(events, written, strict=True) if appended]
    notify_events(session, new)
    last = {event.workflow_id: event for event in new}  # each process's latest, in order
    for event in new:
        if not latest_only or last[event.workflow_id] is event:
            _project(session, event)
    if any(written):
        session.commit()
    else:
        session.rollback()
    return written


def audit_data(*, session: Session, key: str) -> dict[str, Any] | None:
    """The `data` of the audit row under `key`, if it is on record."""
    row = session.exec(select(AuditEvent.data).where(col(AuditEvent.key) == key)).first()
    return dict(row) if row is not None else None


def audit_records(*, session: Session, keys: Sequence[str]) -> dict[str, tuple[datetime, Any]]:
    """When, and with what `data`, each of `keys` on record was recorded."""
    if not keys:
        return {}
    query = select(AuditEvent.key, AuditEvent.at, AuditEvent.data).where(
        col(AuditEvent.key).in_(keys)
    )
    return {key: (as_utc(at) or at, dict(data)) for key, at, data in session.exec(query).all()}


def pending(
    *,
    session: Session,
    actor: str | None = None,
    overdue_at: datetime | None = None,
    limit: int = 100,
) -> Sequence[PendingAction]:
    """What awaits `actor` (or, with `overdue_at`, everything past its deadline), soonest first;
    actions without a deadline last."""
    query = select(PendingAction)
    if actor is not None:
        query = query.where(col(PendingAction.actor) == actor)
    if overdue_at is not None:
        query = query.where(col(PendingAction.deadline) < overdue_at)
    query = query.order_by(
        col(PendingAction.deadline).is_(None),
        col(PendingAction.deadline),
        col(PendingAction.id),
    )
    return session.exec(query.limit(limit)).all()


def get_process(*, session: Session, workflow_id: str) -> Process | None:
    return session.get(Process, workflow_id)


def state_of(row: Process | None, process: ProcessType[Any, S]) -> S | None:
    """A process's last state as its projection keeps it, read back as its own status model —
    the one way the store's code reads a process's state (a renamed field fails type checking,
    never a lookup by key). None: not a process of that kind, or nothing recorded yet."""
    if row is None or row.kind != process.kind.value or not row.state:
        return None
    return process.result.model_validate(row.state)


def expansion_status(*, session: Session, workflow_id: str) -> ExpansionStatus | None:
    """An expansion's last state as its projection keeps it, if it is an expansion's."""
    return state_of(get_process(session=session, workflow_id=workflow_id), contract.EXPANSION)


def count_open(*, session: Session, kind: ProcessKind, partner_id: str) -> int:
    return session.exec(
        select(func.count())
        .select_from(Process)
        .where(col(Process.kind) == kind)
        .where(col(Process.partner_id) == partner_id)
        .where(col(Process.status) == ProcessStatus.ACTIVE.value)
    ).one()


def list_processes(
    *,
    session: Session,
    kind: ProcessKind,
    partner_id: str | None = None,
    stage: str | None = None,
    status: str | None = None,
    after: str | None = None,
    limit: int = 100,
    summaries: bool = False,
    by_deadline: bool = False,
    after_deadline: datetime | None = None,
) -> Sequence[Process]:
    """Keyset pages ordered by workflow id — or, `by_deadline`, soonest next deadline first
    (overdue first, those awaiting no one last), the page after (`after_deadline`, `after`) —
    filtered on indexed columns. `summaries` leaves out each row's `state` (the workflow's
    whole last status): a list page does not show it, and decoding a hundred of them made the
    API's garbage collector the p99 (bench/RESULTS.md)."""
    query = select(Process).where(col(Process.kind) == kind)
    deadline, workflow_id = col(Process.next_deadline), col(Process.workflow_id)
    if by_deadline:
        query = query.order_by(deadline.is_(None), deadline, workflow_id)
        if after is not None and after_deadline is not None:
            at = after_deadline.astimezone(UTC)
            query = query.where(
                or_(
                    deadline > at,
                    and_(deadline == at, workflow_id > after),
                    deadline.is_(None),
                )
            )
        elif after is not None:
            query = query.where(deadline.is_(None), workflow_id > after)
        after = None
    else:
        query = query.order_by(workflow_id)
    if summaries:
        query = query.options(defer(Process.state))  # type: ignore[arg-type]
    if partner_id is not None:
        query = query.where(col(Process.partner_id) == partner_id)
    if stage is not None:
        query = query.where(col(Process.stage) == stage)
    if status is not None:
        query = query.where(col(Process.status) == status)
    if after is not None:
        query = query.where(col(Process.workflow_id) > after)
    return session.exec(query.limit(limit)).all()


def audit_page(
    *,
    session: Session,
    partner_id: str | None,
    workflow_id: str | None,
    after: int | None,
    limit: int,
) -> Sequence[AuditEvent]:
    query = select(AuditEvent).order_by(col(AuditEvent.seq)).limit(limit)
    if partner_id is not None:
        query = query.where(col(AuditEvent.partner_id) == partner_id)
    if workflow_id is not None:
        query = query.where(col(AuditEvent.workflow_id) == workflow_id)
    if after is not None:
        query = query.where(col(AuditEvent.seq) > after)
    return session.exec(query).all()


def audit_events(
    *, session: Session, workflow_id: str | None = None, partner_id: str | None = None
) -> Sequence[AuditEvent]:
    query = select(AuditEvent).order_by(col(AuditEvent.id))
    if workflow_id is not None:
        query = query.where(col(AuditEvent.workflow_id) == workflow_id)
    if partner_id is not None:
        query = query.where(col(AuditEvent.partner_id) == partner_id)
    return session.exec(query).all()
