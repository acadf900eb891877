"""What the business gauges read from the store, at scrape time: the open processes by kind and
stage, the steps waiting and overdue by actor and since when the oldest has waited, and the
webhook deliveries failing. A few grouped counts on indexed columns, in one read-only session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, or_
from sqlmodel import Session, col, select

from policy.vocabulary import ProcessStatus
from store.repo.common import as_utc
from store.repo.notifications import Delivery
from store.tables import (
    DeliveryAttempt,
    PendingAction,
    Process,
    WebhookDelivery,
    WebhookSubscription,
)

PARTNER = "partner"
PARTNER_ACTOR = "partner:"  # how a process names the partner it awaits


@dataclass(frozen=True)
class Waiting:
    """The steps one actor is awaited for."""

    steps: int
    overdue: int
    oldest_since: datetime | None


@dataclass(frozen=True)
class Gauges:
    open_processes: dict[tuple[str, str], int]  # (kind, stage) → open processes
    waiting: dict[str, Waiting]  # actor (a body, ops, or `partner` for every partner) → steps
    deliveries_failing: int  # still being retried after at least one failed attempt
    deliveries_given_up: int  # failed for their whole retry period
    subscriptions_disabled: int


def read(session: Session, now: datetime) -> Gauges:
    open_processes = {
        (kind, stage): n
        for kind, stage, n in session.execute(
            select(Process.kind, Process.stage, func.count())
            .where(col(Process.status) == ProcessStatus.ACTIVE.value)
            .group_by(Process.kind, Process.stage)
        )
    }
    overdue = func.sum(case((col(PendingAction.deadline) < now, 1), else_=0))
    # Partners are one actor here (`partner`), not one each: a label per partner would be a
    # series per partner.
    actor = case(
        (col(PendingAction.actor).startswith(PARTNER_ACTOR), PARTNER), else_=PendingAction.actor
    )
    waiting = {
        who: Waiting(steps=steps, overdue=int(late or 0), oldest_since=as_utc(since))
        for who, steps, late, since in session.execute(
            select(actor, func.count(), overdue, func.min(PendingAction.since)).group_by(actor)
        )
    }
    code = col(DeliveryAttempt.status_code)
    failing = session.execute(
        select(func.count(func.distinct(DeliveryAttempt.delivery_id)))
        .join(WebhookDelivery, col(WebhookDelivery.id) == col(DeliveryAttempt.delivery_id))
        .where(
            col(WebhookDelivery.status) == Delivery.PENDING,
            or_(code.is_(None), code < 200, code > 299),
        )
    ).scalar_one()
    given_up = session.execute(
        select(func.count()).where(col(WebhookDelivery.status) == Delivery.FAILED)
    ).scalar_one()
    disabled = session.execute(
        select(func.count()).where(
            col(WebhookSubscription.disabled_at).is_not(None),
            col(WebhookSubscription.deleted_at).is_(None),
        )
    ).scalar_one()
    return Gauges(open_processes, waiting, failing, given_up, disabled)
