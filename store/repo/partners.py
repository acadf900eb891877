"""Partners: registration, reads, and what a partner holds (its grants and registered
permissions)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from policy.evidence import PartnerState
from policy.grants import Grant, Holdings
from policy.vocabulary import PartnerStatus
from store.repo.common import AlreadyExists, UnknownPartner, as_utc
from store.schemas import DeclaredCompatibility, PartnerCreate, PartnerPublic, Runtime
from store.tables import Partner, PartnerCompat, utcnow


def create_partner(*, session: Session, partner: PartnerCreate) -> Partner:
    row = Partner(
        id=partner.id,
        name=partner.name,
        tier=partner.tier,
        status=PartnerStatus.ACTIVE,
        os_version=partner.os_version,
        api_version=partner.api_version,
        runtime_name=partner.runtime.name,
        runtime_version=partner.runtime.version,
        created_at=utcnow(),
    )
    _set_holdings(row, partner.holdings)
    session.add(row)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise AlreadyExists(partner.id) from exc
    return row


def get_partner(*, session: Session, partner_id: str) -> Partner | None:
    return session.get(Partner, partner_id)


def list_partners(
    *, session: Session, after: str | None = None, limit: int = 100, only: str | None = None
) -> Sequence[Partner]:
    """Keyset pagination by id; `only` restricts the list to one partner (a partner's view)."""
    query = select(Partner).order_by(col(Partner.id)).limit(limit)
    if after is not None:
        query = query.where(col(Partner.id) > after)
    if only is not None:
        query = query.where(col(Partner.id) == only)
    return session.exec(query).all()


def holdings(row: Partner) -> Holdings:
    """What the partner holds: its grants and the permissions registered with it."""
    return Holdings(
        grants=tuple(Grant.model_validate(g) for g in row.grants),
        registered=tuple(row.registered_permissions),
    )


def _set_holdings(row: Partner, held: Holdings) -> None:
    row.grants = [g.model_dump(mode="json") for g in held.grants]
    row.registered_permissions = list(held.registered)


def partner_public(
    row: Partner,
    compatibility: Sequence[PartnerCompat] = (),
    status: PartnerStatus = PartnerStatus.ACTIVE,
) -> PartnerPublic:
    """The partner's profile; `status` as its remediations make it (repo.statuses)."""
    held = holdings(row)
    return PartnerPublic(
        id=row.id,
        name=row.name,
        tier=row.tier,
        status=status,
        os_version=row.os_version,
        api_version=row.api_version,
        runtime=Runtime(name=row.runtime_name, version=row.runtime_version),
        capabilities=list(held.capabilities),
        permissions=list(held.permissions),
        grants=list(held.grants),
        registered_permissions=list(held.registered),
        compatibility=[
            DeclaredCompatibility(
                kind=c.kind,
                name=c.name,
                version=c.version,
                release=c.release,
                source=c.source,
                declared_at=as_utc(c.declared_at) or c.declared_at,
            )
            for c in compatibility
        ],
        created_at=as_utc(row.created_at) or row.created_at,
    )


def partner_state(row: Partner) -> PartnerState:
    held = holdings(row)
    return PartnerState(
        partner_id=row.id,
        tier=row.tier,
        os_version=row.os_version,
        api_version=row.api_version,
        runtime_name=row.runtime_name,
        runtime_version=row.runtime_version,
        capabilities=held.capabilities,
        permissions=held.permissions,
        grants=held.grants,
    )


def _locked_partner(session: Session, partner_id: str) -> Partner:
    """The partner's row, locked for the transaction (after the audit chain's head: see
    audit.lock)."""
    partner = session.get(Partner, partner_id, with_for_update=True)
    if partner is None:
        session.rollback()
        raise UnknownPartner(partner_id)
    return partner
