"""Partners: admin data (registration), readable by every role (a partner: itself only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import AdminDep, CurrentPrincipal, PolicyDep, SessionDep
from api.problems import Problem, not_found
from policy.partners import check_profile
from store import repo
from store.schemas import PartnerCreate, PartnerPublic

router = APIRouter(prefix="/partners", tags=["partners"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PartnerPublic)
def register_partner(
    body: PartnerCreate, _: AdminDep, session: SessionDep, policy: PolicyDep
) -> PartnerPublic:
    """Register a partner (admin)."""
    decision = check_profile(tier=body.tier, permissions=body.permissions, policy=policy)
    if not decision.allowed:
        raise Problem.refused(decision, "the partner profile breaks a governance rule")
    try:
        row = repo.create_partner(session=session, partner=body)
    except repo.AlreadyExists:
        raise Problem(409, f"partner {body.id!r} is already registered") from None
    return repo.partner_public(row)


@router.get("", response_model=list[PartnerPublic])
def list_partners(
    principal: CurrentPrincipal,
    session: SessionDep,
    after: Annotated[
        str | None, Query(max_length=64, description="Last id of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[PartnerPublic]:
    """List partners by id (keyset pages); a partner sees only itself."""
    rows = repo.list_partners(session=session, after=after, limit=limit, only=principal.partner_id)
    return [repo.partner_public(r) for r in rows]


@router.get("/{partner_id}", response_model=PartnerPublic)
def get_partner(partner_id: str, principal: CurrentPrincipal, session: SessionDep) -> PartnerPublic:
    """One partner's profile, including its tier and status."""
    principal.ensure_sees(partner_id, "partner")
    row = repo.get_partner(session=session, partner_id=partner_id)
    if row is None:
        raise not_found("partner")
    return repo.partner_public(row)
