"""Deprecation notices (TSC): one notice → a required migration for every partner that uses what
it deprecates (M-2.1). The call returns at once with the notice's id; the fan-out runs as a
`DeprecationNotice` workflow, page by page, and its progress is read with `GET`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import Field, field_validator

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
from api.problems import Problem
from api.processes import Accepted, ProcessSummary, read_state, start_once, summary
from kwanus import contract
from kwanus.hashing import canonical_sha256
from kwanus.models.deprecation import DeprecationInput, DeprecationStatus
from policy.deprecation import DeprecationNotice, NoticeId
from policy.migration import check_request
from policy.vocabulary import ProcessKind, Role
from store import repo

router = APIRouter(prefix="/deprecations", tags=["deprecations"])
TscDep = Annotated[Principal, Depends(require(Role.TSC))]


class DeprecationCreate(DeprecationNotice):
    id: NoticeId | None = Field(
        default=None,
        description="Client-chosen id; by default the notice is named by what it deprecates "
        "(`<kind>-<name>-<version>`), so the same notice sent twice is one notice (P-1).",
    )

    @field_validator("id")
    @classmethod
    def _not_a_process_prefix(cls, value: str | None) -> str | None:
        # Its migrations are `<id>.<partner>`: a prefix processes use would take their ids.
        if value is not None and value.startswith(contract.SYSTEM_MIGRATION_PREFIXES):
            raise ValueError("ids starting exp-, rem- or downgrade- are the processes' (P-1)")
        return value


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def notify_deprecation(
    body: DeprecationCreate,
    principal: TscDep,
    policy: PolicyDep,
    settings: SettingsDep,
    session: SessionDep,
    temporal: TemporalDep,
    response: Response,
) -> Accepted:
    """Send a deprecation notice (TSC). Every affected partner gets one required migration,
    `migration-<notice id>.<partner id>`; sending the notice again starts nothing new."""
    notice = DeprecationNotice.model_validate(body.model_dump(exclude={"id"}))
    kind = notice.migration
    refusal = check_request(
        trigger=kind.trigger,
        type_=kind.type_,
        subtype=kind.subtype,
        fallback_months=notice.fallback_months,
        policy=policy,
    )
    if not refusal.allowed:
        raise Problem.refused(refusal, "the notice breaks a governance rule")
    notice_id = body.id or notice.default_id
    return await start_once(
        temporal,
        session,
        response,
        contract.DEPRECATION,
        DeprecationInput(
            notice_id=notice_id,
            notice=notice,
            policy=policy,
            requested_by=principal.actor,
            batch_size=settings.fanout_batch_size,
        ),
        process_id=notice_id,
        task_queue=settings.task_queue,
        partner_id=None,
        content_sha256=canonical_sha256(notice),
        summary=f"Deprecation {notice_id} · {notice.kind.value} {notice.name} "
        f"{notice.version or ''}".rstrip(),
        what="deprecation notice",
    )


@router.get("", response_model=list[ProcessSummary])
def list_deprecations(
    principal: CurrentPrincipal,
    session: SessionDep,
    after: After = None,
    limit: Limit = 100,
) -> list[ProcessSummary]:
    """Every notice (bodies, ops, admin; partners see their migrations instead)."""
    if principal.role is Role.PARTNER:
        return []
    rows = repo.list_processes(
        session=session, kind=ProcessKind.DEPRECATION, after=after, limit=limit, summaries=True
    )
    return [summary(r) for r in rows]


@router.get("/{notice_id}", response_model=DeprecationStatus)
async def get_deprecation(
    notice_id: str, principal: CurrentPrincipal, session: SessionDep, temporal: TemporalDep
) -> DeprecationStatus:
    """A notice and how far its fan-out has gone (`progress`: partners scanned, affected,
    migrations started)."""
    workflow_id = contract.deprecation_workflow_id(notice_id)
    return await read_state(
        temporal, session, principal, workflow_id, DeprecationStatus, "deprecation notice"
    )
