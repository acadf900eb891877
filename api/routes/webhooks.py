"""Webhook subscriptions (P-7, Standard Webhooks) and the inbox every receiver reads.

A receiver is a partner or a body. A partner subscribes for itself and a body for itself; admin
names the partner or the body. Another receiver's subscriptions are not found (404, never
403: their existence is not revealed). A URL must be https and resolve to public addresses
only (OWASP API7:2023) — checked here and again before each delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import (
    WATCHERS,
    CurrentPrincipal,
    Limit,
    Principal,
    SessionDep,
    SettingsDep,
    require,
)
from api.problems import Problem, not_found
from kwanus.notifications import receiver_of_partner
from kwanus.webhooks import safe_url
from policy.vocabulary import Body, NotificationType, Role
from store import repo
from store.schemas import PartnerId
from store.tables import WebhookSubscription, utcnow

router = APIRouter(tags=["notifications"])

# A receiver's live subscriptions, at most.
MAX_SUBSCRIPTIONS = 10
# Who has webhooks: the receivers (a partner, a body) and admin, who manages theirs.
Subscriber = Annotated[
    Principal, Depends(require(Role.PARTNER, Role.TSC, Role.SCO, Role.ERC, Role.CGB, Role.ADMIN))
]
# ... and who reads them: those, and ops, who reads everything and acts on none of it (P-6).
Reader = Annotated[
    Principal,
    Depends(require(Role.PARTNER, Role.TSC, Role.SCO, Role.ERC, Role.CGB, Role.ADMIN, Role.OPS)),
]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="https; must resolve to public addresses.")
    events: list[NotificationType] | None = Field(
        default=None, max_length=len(NotificationType), description="Empty or absent: all."
    )
    partner_id: PartnerId | None = Field(default=None, description="admin: the partner's.")
    body: Body | None = Field(default=None, description="admin: a body's.")


class WebhookPublic(BaseModel):
    id: str
    url: str
    events: list[NotificationType]
    owner: str
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="`whsec_…`: shown in this response only.")


class SecretRotated(BaseModel):
    id: str
    secret: str = Field(description="The new `whsec_…`, shown in this response only.")
    previous_valid_until: datetime = Field(description="The old secret signs too until then.")


class Attempt(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None


class DeliveryLog(BaseModel):
    subscription_id: str
    status: str = Field(description="pending, delivered, failed or skipped.")
    finished_at: datetime | None
    attempts: list[Attempt]


class NotificationOut(BaseModel):
    id: str = Field(description="`ntf_<n>`: also each delivery's `webhook-id`.")
    type: NotificationType
    timestamp: datetime
    data: dict[str, Any] = Field(
        description="receiver, partner_id, process, process_id, workflow_id, link, message and "
        "what the type carries — the body a webhook receives."
    )
    deliveries: list[DeliveryLog]


def _owner(principal: Principal, body: WebhookCreate, session: SessionDep) -> str:
    """Whose subscription this is: the caller's own (a partner or a body names nobody but
    itself), or — admin — exactly the one partner or body it names."""
    named = {
        field: receiver
        for field, receiver in (
            ("partner_id", body.partner_id and receiver_of_partner(body.partner_id)),
            ("body", body.body and body.body.value),
        )
        if receiver
    }
    if principal.role is not Role.ADMIN:
        if any(receiver != principal.actor for receiver in named.values()):
            raise Problem(
                403,
                "a receiver subscribes for itself only",
                errors={f: "not yours" for f, r in named.items() if r != principal.actor},
            )
        return principal.actor
    if len(named) != 1:
        raise Problem(
            422,
            "admin names exactly one receiver: partner_id or body",
            errors={"partner_id": "name a partner or a body", "body": "or a body"},
        )
    if body.partner_id and repo.get_partner(session=session, partner_id=body.partner_id) is None:
        raise Problem(422, "no such partner", errors={"partner_id": "unknown partner"})
    (receiver,) = named.values()
    return receiver


def _own(principal: Principal) -> str | None:
    """The receiver whose records the caller reads or manages: its own; every one for admin
    (and, reading only, ops)."""
    return None if principal.role in WATCHERS else principal.actor


def _find(principal: Principal, subscription_id: str, session: SessionDep) -> WebhookSubscription:
    row = repo.get_subscription(
        session=session, subscription_id=subscription_id, owner=_own(principal)
    )
    if row is None:
        raise not_found("webhook")
    return row


@router.post("/webhooks", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
def create_webhook(
    body: WebhookCreate, principal: Subscriber, session: SessionDep, settings: SettingsDep
) -> WebhookCreated:
    """P-7: deliver the receiver's notifications to `url` as signed webhooks (Standard
    Webhooks), those of `events` only if given. The signing secret is in this response only."""
    owner = _owner(principal, body, session)
    where = safe_url(body.url, allow_private=settings.webhooks_allow_private)
    if not where.allowed:
        raise Problem.refused(where, "the webhook URL is refused")
    try:
        row = repo.create_subscription(
            session=session,
            owner=owner,
            url=body.url,
            events=sorted({e.value for e in body.events or []}),
            created_by=principal.actor,
            now=utcnow(),
            most=MAX_SUBSCRIPTIONS,
        )
    except repo.TooManySubscriptions:
        raise Problem(
            409, f"a receiver has at most {MAX_SUBSCRIPTIONS} webhooks; delete one"
        ) from None
    return WebhookCreated(**repo.subscription_public(row), secret=row.secret)


@router.get("/webhooks", response_model=list[WebhookPublic])
def list_webhooks(principal: Reader, session: SessionDep) -> list[WebhookPublic]:
    """The caller's own subscriptions (admin and ops: everyone's, P-6), disabled ones included;
    never a secret."""
    rows = repo.live_subscriptions(session=session, owner=_own(principal), include_disabled=True)
    return [WebhookPublic(**repo.subscription_public(r)) for r in rows]


@router.delete("/webhooks/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(subscription_id: str, principal: Subscriber, session: SessionDep) -> Response:
    """No more deliveries to it (one in flight is not sent); its log stays in the inbox."""
    row = _find(principal, subscription_id, session)
    repo.delete_subscription(session=session, row=row, now=utcnow())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/webhooks/{subscription_id}/rotate-secret", response_model=SecretRotated)
def rotate_webhook_secret(
    subscription_id: str, principal: Subscriber, session: SessionDep
) -> SecretRotated:
    """A new signing secret, in this response only; for 24 hours each delivery is signed by the
    old one too, so the receiver can switch without missing one."""
    row = _find(principal, subscription_id, session)
    secret = repo.rotate_secret(session=session, row=row, now=utcnow())
    until = repo.as_utc(row.previous_until)
    assert until is not None
    return SecretRotated(id=row.id, secret=secret, previous_valid_until=until)


@router.get("/notifications", response_model=list[NotificationOut])
def list_notifications(
    principal: CurrentPrincipal,
    session: SessionDep,
    before: Annotated[
        str | None, Query(max_length=24, description="The last `id` of the previous page.")
    ] = None,
    type: Annotated[NotificationType | None, Query(description="Only this type.")] = None,
    receiver: Annotated[
        str | None, Query(max_length=80, description="ops and admin: one receiver's.")
    ] = None,
    limit: Limit = 100,
) -> list[NotificationOut]:
    """P-7: the caller's own notifications — a partner's, a body's — newest first, each with
    its webhook deliveries and their attempts; the same whether or not a webhook is set. Ops
    and admin read every receiver's."""
    if principal.role in WATCHERS:
        whose = receiver
    elif receiver is not None and receiver != principal.actor:
        raise Problem(422, "only ops and admin choose a receiver", errors={"receiver": "yours"})
    else:
        whose = principal.actor
    after = None
    if before is not None:
        after = repo.parse_public_id(before)
        if after is None:
            raise Problem(422, "not a notification id", errors={"before": "ntf_<n>"})
    items = repo.inbox(
        session=session,
        receiver=whose,
        before=after,
        limit=limit,
        type_=type.value if type else None,
    )
    return [_out(item) for item in items]


def _out(item: repo.InboxItem) -> NotificationOut:
    body = repo.payload(item.notification)
    return NotificationOut(
        id=body["id"],
        type=body["type"],
        timestamp=body["timestamp"],
        data=body["data"],
        deliveries=[
            DeliveryLog(
                subscription_id=d.subscription_id,
                status=d.status,
                finished_at=repo.as_utc(d.finished_at),
                attempts=[
                    Attempt(
                        attempt=a.attempt,
                        at=repo.as_utc(a.at) or a.at,
                        status_code=a.status_code,
                        error=a.error,
                    )
                    for a in attempts
                ],
            )
            for d, attempts in item.deliveries
        ],
    )
