"""The platform's compatibility matrix (E-9, M-5.1): every change numbered in its history and
audited — TSC's, the shipped seed's, a deprecation notice's."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from kwanus.models.common import RecordEvent
from policy.compatibility import deprecated_by
from policy.deprecation import DeprecationNotice
from policy.evidence import CompatibilityMatrix, MatrixEntry, PlatformRef
from store import audit
from store.repo.common import AlreadyExists, insert_for
from store.repo.grants import _declare
from store.repo.processes import _first_time, _record, _record_once
from store.tables import CompatChange, CompatEntry, utcnow


def _upsert_matrix(
    session: Session,
    entries: Sequence[MatrixEntry],
    *,
    source: str,
    actor: str,
    audit_key: str,
    at: datetime,
) -> list[dict[str, Any]]:
    """Apply matrix entries; every entry that changes is numbered in the history (E-9, never
    silently). Returns the changes, for the audit event that carries them."""
    insert = insert_for(session)
    version = matrix_version(session=session)
    changes: list[dict[str, Any]] = []
    for entry in entries:
        row = session.get(CompatEntry, (entry.kind.value, entry.name, entry.version))
        if row is not None and row.status == entry.status.value:
            continue
        stmt = insert(CompatEntry).values(
            kind=entry.kind.value,
            name=entry.name,
            version=entry.version,
            status=entry.status.value,
            updated_at=at,
            updated_by=source,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["kind", "name", "version"],
            set_={"status": stmt.excluded.status, "updated_at": at, "updated_by": source},
        )
        session.execute(stmt)
        version += 1
        change: dict[str, Any] = {
            "kind": entry.kind.value,
            "name": entry.name,
            "version": entry.version,
            "status": entry.status.value,
            "previous": row.status if row is not None else None,
        }
        session.add(
            CompatChange(
                matrix_version=version,
                kind=entry.kind.value,
                name=entry.name,
                version=entry.version,
                status=entry.status.value,
                previous=change["previous"],
                at=at,
                source=source,
                actor=actor,
                audit_key=audit_key,
            )
        )
        changes.append({**change, "matrix_version": version})
    return changes


def matrix_version(*, session: Session) -> int:
    latest = session.exec(select(func.max(CompatChange.matrix_version))).one()
    return int(latest or 0)


def change_matrix(
    *,
    session: Session,
    entries: Sequence[MatrixEntry],
    actor: str,
    reason: str,
    source: str = "compatibility-matrix",
    key: str | None = None,
) -> list[dict[str, Any]]:
    """TSC's change: the entries and one audit event naming who and why, in one transaction —
    directly (`PUT /v1/compatibility-matrix`), or accepting a stewardship report's proposals
    (`source` the report, `key` once per report). Nothing changed → nothing written."""
    now = utcnow()
    key = key or f"compatibility-matrix:v{matrix_version(session=session) + 1}"
    changes = _upsert_matrix(session, entries, source=source, actor=actor, audit_key=key, at=now)
    if not changes:
        session.rollback()
        return []
    audit.append(
        session,
        {
            "key": key,
            "at": now,
            "recorded_at": now,
            "workflow_id": source,
            "process": "matrix",
            "process_id": str(changes[-1]["matrix_version"]),
            "partner_id": "",
            "event": "matrix_changed",
            "actor": actor,
            "stage": "",
            "rules": ["E-9.1", "M-5.1"],
            "data": {"reason": reason, "changes": changes},
        },
    )
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise AlreadyExists("another matrix change landed first") from exc
    return changes


def update_matrix(*, session: Session, event: RecordEvent, entries: Sequence[PlatformRef]) -> bool:
    """A rollout's matrix entries as runs rolled out before E-9.2's decision sent them, in flight
    at a deploy: stored as the partner's own compatibility — never the platform's rows — with
    the event, once per key."""
    if not _first_time(session, event.key):
        return False
    declared = _declare(session, event.partner_id, event, "", entries)
    _record_once(session, event.model_copy(update={"data": {**event.data, "declared": declared}}))
    session.commit()
    return True


PLATFORM_SEED = "platform-seed"


def seed_platform_matrix(
    *, session: Session, entries: Sequence[MatrixEntry]
) -> list[dict[str, Any]]:
    """The versions the product ships (store/platform-matrix.json), added where the matrix does
    not list them yet — never changing a row that is there (TSC's later calls stand) — numbered
    in the history and audited as the platform's. Nothing new → nothing written."""
    audit.lock(session)
    missing = [
        e for e in entries if session.get(CompatEntry, (e.kind.value, e.name, e.version)) is None
    ]
    if not missing:
        session.rollback()
        return []
    now = utcnow()
    key = f"{PLATFORM_SEED}:v{matrix_version(session=session) + 1}"
    changes = _upsert_matrix(
        session, missing, source=PLATFORM_SEED, actor="kwanus", audit_key=key, at=now
    )
    audit.append(
        session,
        {
            "key": key,
            "at": now,
            "recorded_at": now,
            "workflow_id": PLATFORM_SEED,
            "process": "matrix",
            "process_id": str(changes[-1]["matrix_version"]),
            "partner_id": "",
            "event": "matrix_seeded",
            "actor": "kwanus",
            "stage": "",
            "rules": ["E-9.1", "M-5.1"],
            "data": {"changes": changes},
        },
    )
    session.commit()
    return changes


def record_deprecation(*, session: Session, event: RecordEvent, notice: DeprecationNotice) -> bool:
    """A deprecation notice on record (with its projection), and the version it deprecates marked
    `deprecated` in the platform's matrix (M-5.1), in one transaction, once per key."""
    if not _first_time(session, event.key):
        return False
    entries = deprecated_by(notice, compatibility_matrix(session=session))
    changes = _upsert_matrix(
        session,
        entries,
        source=event.workflow_id,
        actor=event.actor,
        audit_key=event.key,
        at=event.at,
    )
    _record(session, event.model_copy(update={"data": {**event.data, "matrix": changes}}))
    session.commit()
    return True


def matrix_history(*, session: Session, limit: int = 100) -> Sequence[CompatChange]:
    return session.exec(
        select(CompatChange).order_by(col(CompatChange.matrix_version).desc()).limit(limit)
    ).all()


def compatibility_matrix(*, session: Session) -> CompatibilityMatrix:
    rows = session.exec(
        select(CompatEntry).order_by(
            col(CompatEntry.kind), col(CompatEntry.name), col(CompatEntry.version)
        )
    ).all()
    return CompatibilityMatrix(
        version=matrix_version(session=session),
        entries=tuple(
            MatrixEntry(kind=r.kind, name=r.name, version=r.version, status=r.status) for r in rows
        ),
    )
