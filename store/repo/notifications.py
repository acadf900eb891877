"""Notifications and webhooks: every receiver's inbox (P-7), its subscriptions, and the outbox
of deliveries — each notification written with the audit event that made it, and with one
delivery row per subscription that asked for it, in that event's transaction."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select, update
from sqlmodel.sql.expression import SelectOfScalar

from kwanus.models.common import RecordEvent
from kwanus.notifications import Note, notes_for, subscription_disabled
from store.repo.common import as_utc, insert_for
from store.tables import (
    DeliveryAttempt,
    NotificationRow,
    WebhookDelivery,
    WebhookSubscription,
)

# How long a rotated-out secret still signs, beside the new one.
ROTATION_OVERLAP = timedelta(hours=24)


class Delivery:
    """A delivery's status."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"  # the subscription was deleted or disabled before it was delivered


# --- written with the events ----------------------------------------------------------------


def notify_event(session: Session, event: RecordEvent) -> None:
    """The notifications `event` makes, and their deliveries, uncommitted: in the transaction
    that appends the event, so they exist exactly when it does (P-4, P-7)."""
    notify_events(session, [event])


def notify_events(session: Session, events: Sequence[RecordEvent]) -> None:
    """`notify_event` for several events: one look-up of their receivers' subscriptions."""
    notes = [note for event in events for note in notes_for(event)]
    if not notes:
        return
    subscribed = _subscriptions_of(session, {n.receiver for n in notes})
    for note in notes:
        add_note(session, note, subscribed)


def _subscriptions_of(session: Session, owners: set[str]) -> dict[str, list[WebhookSubscription]]:
    """The live subscriptions of `owners`, by owner: one query for an event's receivers."""
    query = _live(include_disabled=False).where(col(WebhookSubscription.owner).in_(sorted(owners)))
    found: dict[str, list[WebhookSubscription]] = {}
    for row in session.exec(query).all():
        found.setdefault(row.owner, []).append(row)
    return found


def add_note(
    session: Session,
    note: Note,
    subscribed: dict[str, list[WebhookSubscription]] | None = None,
) -> int | None:
    """One notification, once per key, with a pending delivery for each live subscription of its
    receiver (`subscribed`, else read now) that asks for its type. Returns its id, or None if
    it was on record already."""
    insert = insert_for(session)
    stmt = (
        insert(NotificationRow)
        .values(
            key=note.key,
            type=note.type.value,
            receiver=note.receiver,
            partner_id=note.partner_id,
            process_id=note.process_id,
            workflow_id=note.workflow_id,
            link=note.link,
            message=note.message[:2000],
            data={"process": note.process, **note.data},
            at=note.at,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(NotificationRow.__table__.c.id)  # type: ignore[attr-defined]
    )
    row = session.execute(stmt).first()
    if row is None:
        return None
    notification_id = int(row[0])
    if subscribed is None:
        subscribed = _subscriptions_of(session, {note.receiver})
    wanted = [
        s.id
        for s in subscribed.get(note.receiver, [])
        if not s.events or note.type.value in s.events
    ]
    if wanted:
        session.execute(
            insert(WebhookDelivery)
            .values(
                [
                    {
                        "notification_id": notification_id,
                        "subscription_id": sid,
                        "status": Delivery.PENDING,
                        "created_at": note.at,
                    }
                    for sid in wanted
                ]
            )
            .on_conflict_do_nothing()
        )
    return notification_id


# --- the inbox ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxItem:
    notification: NotificationRow
    deliveries: list[tuple[WebhookDelivery, list[DeliveryAttempt]]]


def inbox(
    *,
    session: Session,
    receiver: str | None,
    before: int | None,
    limit: int,
    type_: str | None = None,
) -> list[InboxItem]:
    """A receiver's notifications (every receiver's with None), newest first, keyset-paged by
    id, each with its deliveries and their attempts."""
    query = select(NotificationRow).order_by(col(NotificationRow.id).desc()).limit(limit)
    if receiver is not None:
        query = query.where(col(NotificationRow.receiver) == receiver)
    if before is not None:
        query = query.where(col(NotificationRow.id) < before)
    if type_ is not None:
        query = query.where(col(NotificationRow.type) == type_)
    rows = session.exec(query).all()
    ids = [r.id for r in rows]
    deliveries = (
        session.exec(
            select(WebhookDelivery)
            .where(col(WebhookDelivery.notification_id).in_(ids))
            .order_by(col(WebhookDelivery.id))
        ).all()
        if ids
        else []
    )
    attempts: dict[int, list[DeliveryAttempt]] = {}
    if deliveries:
        for a in session.exec(
            select(DeliveryAttempt)
            .where(col(DeliveryAttempt.delivery_id).in_([d.id for d in deliveries]))
            .order_by(col(DeliveryAttempt.delivery_id), col(DeliveryAttempt.attempt))
        ).all():
            attempts.setdefault(a.delivery_id, []).append(a)
    by_note: dict[int, list[tuple[WebhookDelivery, list[DeliveryAttempt]]]] = {}
    for d in deliveries:
        assert d.id is not None
        by_note.setdefault(d.notification_id, []).append((d, attempts.get(d.id, [])))
    return [InboxItem(r, by_note.get(r.id or 0, [])) for r in rows]


# --- subscriptions --------------------------------------------------------------------------


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and 24 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class TooManySubscriptions(Exception):
    """The receiver has its most subscriptions already."""


def create_subscription(
    *,
    session: Session,
    owner: str,
    url: str,
    events: list[str],
    created_by: str,
    now: datetime,
    most: int,
) -> WebhookSubscription:
    """A new subscription with its secret, unless the receiver has `most` (disabled ones count;
    deleted ones do not). Counted before and again once stored: of creations racing past the
    first count, the surplus is taken back (TooManySubscriptions)."""

    def held() -> int:
        query = _live(include_disabled=True).where(col(WebhookSubscription.owner) == owner)
        return len(session.exec(query).all())

    if held() >= most:
        raise TooManySubscriptions(owner)
    row = WebhookSubscription(
        id="whk_" + secrets.token_hex(12),
        owner=owner,
        url=url,
        events=events,
        secret=new_secret(),
        created_by=created_by,
        created_at=now,
    )
    session.add(row)
    session.commit()
    if held() > most:
        session.delete(row)
        session.commit()
        raise TooManySubscriptions(owner)
    session.refresh(row)
    return row


def _live(*, include_disabled: bool) -> SelectOfScalar[WebhookSubscription]:
    """Subscriptions not deleted (and, unless asked, not disabled), oldest first."""
    query = select(WebhookSubscription).where(col(WebhookSubscription.deleted_at).is_(None))
    if not include_disabled:
        query = query.where(col(WebhookSubscription.disabled_at).is_(None))
    return query.order_by(col(WebhookSubscription.created_at))


def live_subscriptions(
    *, session: Session, owner: str | None, include_disabled: bool = False
) -> Sequence[WebhookSubscription]:
    """A receiver's subscriptions not deleted (and, unless asked, not disabled), oldest first;
    every receiver's with None."""
    query = _live(include_disabled=include_disabled)
    if owner is not None:
        query = query.where(col(WebhookSubscription.owner) == owner)
    return session.exec(query).all()


def get_subscription(
    *, session: Session, subscription_id: str, owner: str | None
) -> WebhookSubscription | None:
    """A subscription not deleted; with `owner`, only if it is that owner's (else None: another
    receiver's subscription is not found, never forbidden)."""
    row = session.get(WebhookSubscription, subscription_id)
    if row is None or row.deleted_at is not None:
        return None
    if owner is not None and row.owner != owner:
        return None
    return row


def delete_subscription(*, session: Session, row: WebhookSubscription, now: datetime) -> None:
    """Deleted, not erased: its deliveries and their attempts stay in the inbox's log; one in
    flight is not sent (`Delivery.SKIPPED`)."""
    row.deleted_at = now
    session.add(row)
    session.commit()


def rotate_secret(*, session: Session, row: WebhookSubscription, now: datetime) -> str:
    """A new secret; the old one signs beside it for ROTATION_OVERLAP."""
    row.previous_secret = row.secret
    row.previous_until = now + ROTATION_OVERLAP
    row.secret = new_secret()
    session.add(row)
    session.commit()
    session.refresh(row)
    return row.secret


def signing_secrets(row: WebhookSubscription, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one within
    its overlap."""
    until = as_utc(row.previous_until)
    if row.previous_secret and until is not None and now < until:
        return [row.secret, row.previous_secret]
    return [row.secret]


# --- deliveries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Undispatched:
    delivery_id: int
    subscription_id: str
    notification_id: int
    owner: str


def undispatched(*, session: Session, limit: int) -> list[Undispatched]:
    """The oldest deliveries not yet handed to their workflow."""
    query = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.subscription_id,
            WebhookDelivery.notification_id,
            WebhookSubscription.owner,
        )
        .join(
            WebhookSubscription,
            col(WebhookSubscription.id) == col(WebhookDelivery.subscription_id),
        )
        .where(col(WebhookDelivery.dispatched_at).is_(None))
        .order_by(col(WebhookDelivery.id))
        .limit(limit)
    )
    return [
        Undispatched(int(i), str(sid), int(nid), str(owner))
        for i, sid, nid, owner in session.exec(query).all()
        if i is not None
    ]


def mark_dispatched(*, session: Session, ids: Sequence[int], now: datetime) -> None:
    if ids:
        session.execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id).in_(ids))
            .values(dispatched_at=now)
        )
        session.commit()


@dataclass(frozen=True)
class Outgoing:
    """What a delivery attempt sends, and where."""

    delivery: WebhookDelivery
    notification: NotificationRow
    subscription: WebhookSubscription


def outgoing(*, session: Session, delivery_id: int) -> Outgoing | None:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        return None
    notification = session.get(NotificationRow, delivery.notification_id)
    subscription = session.get(WebhookSubscription, delivery.subscription_id)
    assert notification is not None and subscription is not None
    return Outgoing(delivery, notification, subscription)


def record_attempt(
    *,
    session: Session,
    delivery_id: int,
    attempt: int,
    at: datetime,
    status_code: int | None,
    error: str | None,
) -> None:
    """One attempt on the delivery's log, once per attempt number (a retried write is a no-op)."""
    insert = insert_for(session)
    session.execute(
        insert(DeliveryAttempt)
        .values(
            delivery_id=delivery_id,
            attempt=attempt,
            at=at,
            status_code=status_code,
            error=error[:500] if error else None,
        )
        .on_conflict_do_nothing()
    )
    session.commit()


def finish(*, session: Session, delivery_id: int, status: str, at: datetime) -> None:
    """The delivery's end; a delivered one also marks its subscription as answering."""
    delivery = session.get(WebhookDelivery, delivery_id)
    assert delivery is not None
    if delivery.status != Delivery.PENDING:
        return
    delivery.status = status
    delivery.finished_at = at
    session.add(delivery)
    if status == Delivery.DELIVERED:
        session.execute(
            update(WebhookSubscription)
            .where(col(WebhookSubscription.id) == delivery.subscription_id)
            .values(last_success_at=at)
        )
    session.commit()


def disable_if_still_failing(
    *, session: Session, delivery_id: int, at: datetime, reason: str, workflow_id: str
) -> WebhookSubscription | None:
    """After a delivery has failed for its whole retry period: its subscription is disabled
    unless it has answered some delivery since this one was made, and its owner is told
    (`subscription.disabled`, in the inbox whatever else fails). Returns it if this call
    disabled it."""
    delivery = session.get(WebhookDelivery, delivery_id)
    assert delivery is not None
    made = as_utc(delivery.created_at)
    assert made is not None
    answered = col(WebhookSubscription.last_success_at)
    # One conditional UPDATE: of deliveries giving up at once, exactly one disables it.
    disabled = session.execute(
        update(WebhookSubscription)
        .where(col(WebhookSubscription.id) == delivery.subscription_id)
        .where(col(WebhookSubscription.disabled_at).is_(None))
        .where(col(WebhookSubscription.deleted_at).is_(None))
        .where(answered.is_(None) | (answered < made))
        .values(disabled_at=at, disabled_reason=reason[:500])
        .returning(col(WebhookSubscription.id))
    ).first()
    if disabled is None:
        session.rollback()
        return None
    sub = session.get(WebhookSubscription, delivery.subscription_id)
    assert sub is not None
    add_note(session, subscription_disabled(sub.id, sub.owner, sub.url, reason, at, workflow_id))
    session.commit()
    session.refresh(sub)
    return sub


def subscription_public(row: WebhookSubscription) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "events": list(row.events),
        "owner": row.owner,
        "created_at": as_utc(row.created_at),
        "disabled_at": as_utc(row.disabled_at),
        "disabled_reason": row.disabled_reason,
    }


def public_id(notification_id: int) -> str:
    """A notification's id in the API and in `webhook-id`: the same on every delivery of it."""
    return f"ntf_{notification_id}"


def parse_public_id(value: str) -> int | None:
    digits = value.removeprefix("ntf_")
    return int(digits) if re.fullmatch(r"[0-9]{1,18}", digits) else None


def payload(row: NotificationRow) -> dict[str, Any]:
    """A notification as a webhook's body carries it (Standard Webhooks: `type`, `timestamp`,
    `data`) and the inbox shows it."""
    assert row.id is not None
    at = as_utc(row.at)
    assert at is not None
    return {
        "id": public_id(row.id),
        "type": row.type,
        "timestamp": at.isoformat(),
        "data": {
            "receiver": row.receiver,
            "partner_id": row.partner_id or None,
            "process_id": row.process_id,
            "workflow_id": row.workflow_id,
            "link": row.link,
            "message": row.message,
            **row.data,
        },
    }
