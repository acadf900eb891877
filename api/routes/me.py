"""What is awaiting the caller: `GET /v1/me/pending`, served from the store's inbox table (never a
Temporal query), soonest deadline first."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import WATCHERS, CurrentPrincipal, Limit, SessionDep
from kwanus import contract
from policy.vocabulary import ProcessKind
from store import repo
from store.tables import utcnow

router = APIRouter(prefix="/me", tags=["me"])


class PendingItem(BaseModel):
    kind: ProcessKind
    id: str
    workflow_id: str
    partner_id: str
    stage: str
    actor: str
    action: str
    deadline: datetime | None
    overdue: bool
    link: str


@router.get("/pending", response_model=list[PendingItem])
def my_pending(
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Limit = 100,
) -> list[PendingItem]:
    """Every step awaiting the caller — a body its reviews, votes and sign-offs; a partner its
    plans, reports and remediation steps — and for ops and admin every step past its deadline,
    whoever it awaits. Soonest deadline first."""
    now = utcnow()
    if principal.role in WATCHERS:
        rows = repo.pending(session=session, overdue_at=now, limit=limit)
    else:
        rows = repo.pending(session=session, actor=principal.actor, limit=limit)
    items = []
    for row in rows:
        kind = ProcessKind(row.kind)
        deadline = repo.as_utc(row.deadline)
        items.append(
            PendingItem(
                kind=kind,
                id=row.process_id,
                workflow_id=row.workflow_id,
                partner_id=row.partner_id,
                stage=row.stage,
                actor=row.actor,
                action=row.action,
                deadline=deadline,
                overdue=deadline is not None and deadline < now,
                link=contract.resource_path(kind, row.process_id),
            )
        )
    return items
