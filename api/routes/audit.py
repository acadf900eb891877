"""The append-only audit log (P-4), read by ops and the bodies; a partner reads its own."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import CurrentPrincipal, Limit, SessionDep
from api.problems import Problem
from policy.vocabulary import Role
from store import repo
from store.tables import WORKFLOW_ID_LENGTH

router = APIRouter(prefix="/audit", tags=["audit"])
READERS = (Role.OPS, Role.TSC, Role.SCO, Role.ERC, Role.CGB, Role.PARTNER)


class AuditRecord(BaseModel):
    seq: int
    at: datetime
    workflow_id: str
    process: str
    process_id: str
    partner_id: str
    event: str
    actor: str
    stage: str
    rules: list[str]
    data: dict[str, Any]
    hash: str


@router.get("", response_model=list[AuditRecord])
def read_audit(
    principal: CurrentPrincipal,
    session: SessionDep,
    partner_id: Annotated[str | None, Query(max_length=64)] = None,
    workflow_id: Annotated[str | None, Query(max_length=WORKFLOW_ID_LENGTH)] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="The last seq of the previous page.")
    ] = None,
    limit: Limit = 100,
) -> list[AuditRecord]:
    """Events in the order they were written (the hash chain's order), filtered by partner
    and/or process; a partner sees only its own."""
    if principal.role not in READERS:
        raise Problem(403, f"role {principal.role.value} may not read the audit log")
    if principal.role is Role.PARTNER:
        partner_id = principal.partner_id
    rows = repo.audit_page(
        session=session, partner_id=partner_id, workflow_id=workflow_id, after=after, limit=limit
    )
    return [
        AuditRecord(
            seq=r.seq or 0,
            at=repo.as_utc(r.at) or r.at,
            workflow_id=r.workflow_id,
            process=r.process,
            process_id=r.process_id,
            partner_id=r.partner_id,
            event=r.event,
            actor=r.actor,
            stage=r.stage,
            rules=list(r.rules),
            data=dict(r.data),
            hash=r.hash,
        )
        for r in rows
    ]
