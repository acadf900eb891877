"""Partners: admin data (registration), readable by every role (a partner: itself only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel

from api.deps import AdminDep, CurrentPrincipal, PolicyDep, SessionDep
from api.problems import Problem, not_found
from policy.evidence import Telemetry
from policy.partners import check_profile
from policy.vocabulary import Role
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


class TelemetryRecorded(BaseModel):
    id: int
    partner_id: str
    report: Telemetry


@router.post(
    "/{partner_id}/telemetry", status_code=status.HTTP_201_CREATED, response_model=TelemetryRecorded
)
def report_telemetry(
    partner_id: str, body: Telemetry, principal: CurrentPrincipal, session: SessionDep
) -> TelemetryRecorded:
    """Record a telemetry report (the partner itself, or ops): the evidence monitoring (M-4.6)
    and tier decisions (E-7) are judged on."""
    if principal.role not in (Role.PARTNER, Role.OPS):
        raise Problem(403, "only the partner itself or ops report telemetry")
    principal.ensure_sees(partner_id, "partner")
    if repo.get_partner(session=session, partner_id=partner_id) is None:
        raise not_found("partner")
    if body.period_end <= body.period_start:
        raise Problem(
            422, "the period ends before it starts", errors={"period_end": "after period_start"}
        )
    row = repo.add_telemetry(session=session, partner_id=partner_id, report=body)
    assert row.id is not None
    return TelemetryRecorded(id=row.id, partner_id=partner_id, report=body)
