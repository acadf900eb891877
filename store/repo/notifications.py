"""Notifications: one per key, in the receiver's inbox."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from kwanus.models.migration import Notification
from store.repo.common import insert_for
from store.tables import NotificationRow


def notify(*, session: Session, note: Notification) -> bool:
    """Write a notification once per key; returns whether this call wrote it."""
    insert = insert_for(session)
    stmt = (
        insert(NotificationRow)
        .values(
            key=note.key,
            partner_id=note.partner_id,
            process_id=note.process_id,
            kind=note.kind,
            message=note.message,
            at=note.at,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(NotificationRow.__table__.c.id)  # type: ignore[attr-defined]
    )
    written = session.execute(stmt).first() is not None
    session.commit()
    return written


def notifications(*, session: Session, partner_id: str) -> Sequence[NotificationRow]:
    query = (
        select(NotificationRow)
        .where(col(NotificationRow.partner_id) == partner_id)
        .order_by(col(NotificationRow.id))
    )
    return session.exec(query).all()
