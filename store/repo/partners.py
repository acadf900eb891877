"""Partners: registration, reads, and what a partner holds (its grants and registered
permissions)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from policy.evidence import PartnerState
from policy.grants import Grant, Holdings
from policy.manifest import Manifest, Runtime, derived
from policy.vocabulary import PartnerStatus
from store.repo.common import AlreadyExists, UnknownPartner, as_utc
from store.schemas import DeclaredCompatibility, PartnerCreate, PartnerPublic
from store.tables import Partner, PartnerCompat, PartnerManifest, utcnow

# The source of a manifest registered with its partner (admin), not by a migration.
REGISTRATION = "registration"


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
        session.flush()  # the manifest refers to the partner's row
        session.add(
            PartnerManifest(
                partner_id=row.id,
                version=1,
                manifest=partner.registered_manifest.model_dump(mode="json"),
                source=REGISTRATION,
                registered_at=row.created_at,
                validated_at=row.created_at,
            )
        )
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


def partner_state(row: Partner, manifest: Manifest | None = None) -> PartnerState:
    """What the partner runs and holds; the workflows of `manifest`, its registered one."""
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
        workflows=manifest.workflows if manifest is not None else (),
    )


def _locked_partner(session: Session, partner_id: str) -> Partner:
    """The partner's row, locked for the transaction (after the audit chain's head: see
    audit.lock)."""
    partner = session.get(Partner, partner_id, with_for_update=True)
    if partner is None:
        session.rollback()
        raise UnknownPartner(partner_id)
    return partner


# --- the partner's manifest (issue 20) ------------------------------------------------------


def manifest_history(*, session: Session, partner_id: str) -> Sequence[PartnerManifest]:
    """Every version of the partner's manifest, newest (the partner's) first."""
    return session.exec(
        select(PartnerManifest)
        .where(col(PartnerManifest.partner_id) == partner_id)
        .order_by(col(PartnerManifest.version).desc())
    ).all()


def current_manifests(*, session: Session, partners: Sequence[Partner]) -> dict[str, Manifest]:
    """The registered manifest of each partner, in one query (a page of partners); a partner
    with none on record (never, after migration 0015) has the one its record derives."""
    ids = [p.id for p in partners]
    rows = session.exec(
        select(PartnerManifest)
        .where(col(PartnerManifest.partner_id).in_(ids))
        .order_by(col(PartnerManifest.partner_id), col(PartnerManifest.version))
    ).all()
    out = {r.partner_id: Manifest.model_validate(r.manifest) for r in rows}  # newest wins
    for partner in partners:
        if partner.id not in out:
            out[partner.id] = derived(
                os_version=partner.os_version,
                api_version=partner.api_version,
                runtime=Runtime(name=partner.runtime_name, version=partner.runtime_version),
                permissions=holdings(partner).permissions,
            )
    return out


def current_manifest(*, session: Session, partner: Partner) -> Manifest:
    return current_manifests(session=session, partners=[partner])[partner.id]


def register_manifest(
    *,
    session: Session,
    partner: Partner,
    manifest: Manifest,
    validated_at: datetime | None,
    source: str,
    key: str,
    at: datetime,
    applied_at: datetime | None = None,
) -> tuple[int, bool]:
    """`manifest` becomes the partner's (M-4.7) — unless a manifest validated after it is
    registered already (two migrations of one partner complete out of the order they were
    validated in: the newer stands). `validated_at` None: `manifest` is the registered one moved
    to a target, as new as it — or as the forced target's `applied_at`, if later: a manifest
    validated before a forced move never undoes it (M-2.3). A new version only when it
    differs; the partner's record takes its versions and runtime. Returns the version in effect
    and whether `manifest` is it. Part of the caller's transaction, which records `key` once."""
    history = manifest_history(session=session, partner_id=partner.id)
    head = history[0] if history else None
    judged = validated_at
    if head is not None:
        newest = as_utc(head.validated_at) or head.validated_at
        if judged is None:
            judged = max(newest, applied_at) if applied_at is not None else newest
        elif judged < newest:
            return head.version, False  # superseded: a newer validated manifest stands
        if Manifest.model_validate(head.manifest) == manifest:
            return head.version, True
    partner.os_version, partner.api_version = manifest.os_version, manifest.api_version
    partner.runtime_name, partner.runtime_version = manifest.runtime.name, manifest.runtime.version
    session.add(partner)
    version = (head.version if head else 0) + 1
    session.add(
        PartnerManifest(
            partner_id=partner.id,
            version=version,
            manifest=manifest.model_dump(mode="json"),
            source=source,
            registered_at=at,
            validated_at=judged or at,
            audit_key=key,
        )
    )
    return version, True
