"""Annual stewardship (E-13.1, M-10.1): the yearly report the four bodies sign off. Runs come from
the Temporal Schedule (`kwanus-stewardship`) or from `POST /v1/stewardship/run`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import (
    After,
    CurrentPrincipal,
    Limit,
    PolicyDep,
    Principal,
    SessionDep,
    SettingsDep,
    TemporalDep,
    require,
)
from api.problems import Problem, not_found
from api.processes import (
    Accepted,
    ProcessSummary,
    read_state,
    send_step,
    start_once,
    summary,
)
from kwanus import contract
from kwanus.hashing import canonical_sha256
from kwanus.models.stewardship import StewardshipInput, StewardshipStatus
from policy.deprecation import NoticeId
from policy.evidence import CompatibilityMatrix
from policy.forms import StewardshipSignoff
from policy.vocabulary import ProcessKind, Role
from store import repo, stewardship
from store.tables import utcnow

router = APIRouter(prefix="/stewardship", tags=["stewardship"])
RunnerDep = Annotated[Principal, Depends(require(Role.OPS, Role.ADMIN))]
BodyDep = Annotated[Principal, Depends(require(Role.TSC, Role.SCO, Role.ERC, Role.CGB))]


class StewardshipRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: NoticeId | None = Field(
        default=None, description="The report's id; the current year by default (one per year)."
    )


@router.post("/run", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def run_stewardship(
    principal: RunnerDep,
    policy: PolicyDep,
    settings: SettingsDep,
    session: SessionDep,
    temporal: TemporalDep,
    response: Response,
    body: StewardshipRun | None = None,
) -> Accepted:
    """Run the annual review now (ops, admin): `stewardship-<year>` unless an id is given.
    Asking again for the same id returns the same review."""
    report_id = (body.id if body else None) or str(utcnow().year)
    return await start_once(
        temporal,
        session,
        response,
        contract.STEWARDSHIP,
        StewardshipInput(report_id=report_id, policy=policy, requested_by=principal.actor),
        process_id=report_id,
        task_queue=settings.task_queue,
        partner_id=None,
        content_sha256=canonical_sha256(StewardshipRun(id=report_id)),
        summary=f"Stewardship review {report_id}",
        what="stewardship review",
    )


@router.get("/reports", response_model=list[ProcessSummary])
def list_reports(
    principal: CurrentPrincipal,
    session: SessionDep,
    after: After = None,
    limit: Limit = 100,
) -> list[ProcessSummary]:
    """Every annual review: its stage, status and who has still to sign it off."""
    rows = repo.list_processes(
        session=session, kind=ProcessKind.STEWARDSHIP, after=after, limit=limit
    )
    return [summary(r) for r in rows]


@router.get("/reports/{report_id}", response_model=StewardshipStatus)
async def get_report(
    report_id: str, principal: CurrentPrincipal, session: SessionDep, temporal: TemporalDep
) -> StewardshipStatus:
    """A report's figures and sign-offs."""
    return await read_state(
        temporal,
        session,
        principal,
        contract.stewardship_workflow_id(report_id),
        StewardshipStatus,
        "report",
    )


@router.post("/reports/{report_id}/signoff", response_model=StewardshipStatus)
async def sign_off(
    report_id: str,
    body: StewardshipSignoff,
    principal: BodyDep,
    session: SessionDep,
    temporal: TemporalDep,
) -> StewardshipStatus:
    """A body signs the report off (M-10.1), once, before the deadline."""
    return await send_step(
        temporal,
        session,
        principal,
        contract.stewardship_workflow_id(report_id),
        "signoff",
        body,
        StewardshipStatus,
        "report",
    )


TscDep = Annotated[Principal, Depends(require(Role.TSC))]


@router.post("/reports/{report_id}/matrix-proposals/accept", response_model=CompatibilityMatrix)
def accept_matrix_proposals(
    report_id: str, principal: TscDep, session: SessionDep
) -> CompatibilityMatrix:
    """TSC accepts the report's compatibility-matrix proposals in one call (E-13.1, M-10.1,
    E-9.1): each entry no partner uses is retired, the report named as the change's source, the
    change audited — once (409 after). Returns the matrix."""
    row = repo.get_process(session=session, workflow_id=contract.stewardship_workflow_id(report_id))
    report = repo.state_of(row, contract.STEWARDSHIP)
    if report is None or report.figures is None:
        raise not_found("report")
    try:
        stewardship.accept_matrix_proposals(session=session, report=report, actor=principal.actor)
    except repo.AlreadyExists as exc:
        raise Problem(409, str(exc)) from None
    return repo.compatibility_matrix(session=session)
