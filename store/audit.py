"""The append-only audit log as a hash chain (tamper evidence): each row's hash covers its
content and the previous row's hash, so changing, removing or reordering a row breaks the chain
from there on — `kwanus audit verify` names the first break. On PostgreSQL a trigger also refuses
UPDATE and DELETE on the table outright."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from store.tables import AuditChain, AuditEvent

GENESIS = "0" * 64
HASHED = (
    "key",
    "at",
    "recorded_at",
    "workflow_id",
    "process",
    "process_id",
    "partner_id",
    "event",
    "actor",
    "stage",
    "rules",
    "data",
)


def _utc(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def row_hash(prev: str, values: dict[str, Any]) -> str:
    doc = {k: _utc(values[k]) if isinstance(values[k], datetime) else values[k] for k in HASHED}
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev}\n{blob}".encode()).hexdigest()


def lock(session: Session) -> tuple[int, str]:
    """Lock the chain's head (a row lock on PostgreSQL, the write lock on SQLite) for the rest
    of the transaction and return it. Every governance write appends to the chain, so taking
    this first also serializes a read-modify-write of what the event changes (a partner's
    grants, its tier): nothing else governed can land in between."""
    table = AuditChain.__table__.c  # type: ignore[attr-defined]
    head = session.execute(
        update(AuditChain)
        .where(col(AuditChain.id) == 1)
        .values(seq=table.seq)
        .returning(table.seq, table.hash)
    ).first()
    if head is None:
        session.add(AuditChain(id=1, seq=0, hash=GENESIS))
        session.flush()
        return 0, GENESIS
    return int(head[0]), str(head[1])


def recorded(session: Session, key: str) -> bool:
    return session.exec(select(AuditEvent.id).where(col(AuditEvent.key) == key)).first() is not None


def append(session: Session, values: dict[str, Any]) -> bool:
    """Append one row at the chain's head, unless its key is already in the log (then nothing
    changes and False). Locks the head first, so the key check and the link are race-free.
    The caller commits."""
    (appended,) = append_all(session, [values])
    return appended


def append_all(session: Session, rows: list[dict[str, Any]]) -> list[bool]:
    """Append rows at the chain's head in order, each unless its key is already in the log (or
    earlier in `rows`): one lock, one look-up of the keys, one insert and one move of the head
    for them all. Returns, per row, whether it was appended. The caller commits."""
    seq, prev = lock(session)
    keys = [values["key"] for values in rows]
    taken = set(session.exec(select(AuditEvent.key).where(col(AuditEvent.key).in_(keys))).all())
    appended = []
    for values in rows:
        if values["key"] in taken:
            appended.append(False)
            continue
        taken.add(values["key"])
        digest = row_hash(prev, values)
        seq += 1
        session.add(AuditEvent(**values, seq=seq, prev_hash=prev, hash=digest))
        prev = digest
        appended.append(True)
    if any(appended):
        session.execute(
            update(AuditChain).where(col(AuditChain.id) == 1).values(seq=seq, hash=prev)
        )
        session.flush()
    return appended


@dataclass(frozen=True)
class Verdict:
    rows: int
    first_break: str | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def _rows(session: Session, batch: int = 1000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        page = session.exec(
            select(AuditEvent)
            .where(col(AuditEvent.seq) > last)
            .order_by(col(AuditEvent.seq))
            .limit(batch)
        ).all()
        if not page:
            return
        yield from page
        last = page[-1].seq or last


def verify(session: Session) -> Verdict:
    """Walk the chain from the start; the first row whose number, link or hash is wrong is
    the first break (and the head must point at the last row)."""
    prev, expected, n = GENESIS, 1, 0
    unchained = session.exec(select(AuditEvent.key).where(col(AuditEvent.seq).is_(None))).first()
    if unchained is not None:
        return Verdict(0, f"row {unchained!r} is outside the chain (no sequence number)")
    for row in _rows(session):
        n += 1
        where = f"row {row.seq} (key {row.key!r})"
        if row.seq != expected:
            return Verdict(n, f"{where}: expected row {expected} — a row is missing")
        if row.prev_hash != prev:
            return Verdict(n, f"{where}: its link does not match the row before")
        values = {k: getattr(row, k) for k in HASHED}
        if row_hash(prev, values) != row.hash:
            return Verdict(n, f"{where}: its content does not match its hash (changed)")
        prev, expected = row.hash, expected + 1
    head = session.get(AuditChain, 1)
    if head is not None and (head.seq, head.hash) != (expected - 1, prev):
        return Verdict(n, f"the chain head names row {head.seq}; the log ends at {expected - 1}")
    return Verdict(n, None)
