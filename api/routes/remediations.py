"""Violations and their remediations (M-9): SCO reports a violation, the partner remediates
step by step, SCO re-validates."""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.deps import (
    CurrentPrincipal,
    PolicyDep,
    Principal,
    SessionDep,
    SettingsDep,
    Temporal,
    TemporalDep,
    require,
)
from api.problems import not_found
from api.processes import Accepted, decision_record, read_state, send_step, start_once
from kwanus import contract
from kwanus.hashing import canonical_sha256
from kwanus.models.remediation import RemediationInput, RemediationStatus
from policy.forms import RemediationStep
from policy.types import Text
from policy.vocabulary import Role, Severity
from store import repo
from store.records import ProcessRecord
from store.tables import utcnow

violations = APIRouter(prefix="/partners", tags=["remediations"])
router = APIRouter(prefix="/remediations", tags=["remediations"])
ScoDep = Annotated[Principal, Depends(require(Role.SCO))]


class ViolationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=contract.CLIENT_ID)] | None = Field(
        default=None, description="Client-chosen id (P-1)."
    )
    kind: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    severity: Severity
    description: Text

    @field_validator("id")
    @classmethod
    def _not_a_process_id(cls, value: str | None) -> str | None:
        # A failed validation's remediation is `<migration>-v<n>` (P-1): taken, the migration
        # would wait on a remediation that never reports to it.
        if value is not None and ("." in value or re.search(r"-v\d+$", value)):
            raise ValueError("ids ending -v<n> or holding '.' are the processes' (P-1)")
        return value


@violations.post(
    "/{partner_id}/violations",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
)
async def report_violation(
    partner_id: str,
    body: ViolationCreate,
    principal: ScoDep,
    policy: PolicyDep,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    response: Response,
) -> Accepted:
    """Report a violation (SCO): opens its remediation with the window of its severity (M-9.2);
    a severe one restricts the partner's access at once."""
    partner = await run_in_threadpool(repo.get_partner, session=session, partner_id=partner_id)
    if partner is None:
        raise not_found("partner")
    remediation_id = body.id or secrets.token_hex(8)
    return await start_once(
        temporal,
        session,
        response,
        contract.REMEDIATION,
        RemediationInput(
            remediation_id=remediation_id,
            partner_id=partner_id,
            partner_tier=partner.tier,
            severity=body.severity,
            kind=body.kind,
            description=body.description,
            opened_at=utcnow(),
            policy=policy,
            opened_by=principal.actor,
        ),
        process_id=remediation_id,
        task_queue=settings.task_queue,
        partner_id=partner_id,
        content_sha256=canonical_sha256(body),
        summary=f"Remediation {remediation_id} · partner {partner_id} · {body.severity.value}",
        what="remediation",
    )


@router.get("/{remediation_id}/decision-record", response_model=ProcessRecord)
def get_decision_record(
    remediation_id: str, principal: CurrentPrincipal, session: SessionDep
) -> ProcessRecord:
    """One exportable record of the remediation: the sha256 of what was submitted, every review,
    vote, decision and step with who acted and the rules applied, the policy version and
    timestamps — served from the store, complete after the run has left Temporal."""
    return decision_record(
        session, principal, contract.remediation_workflow_id(remediation_id), "remediation"
    )


@router.get("/{remediation_id}", response_model=RemediationStatus)
async def get_remediation(
    remediation_id: str, principal: CurrentPrincipal, session: SessionDep, temporal: TemporalDep
) -> RemediationStatus:
    """A remediation's state, from the store (P-8): the next step, its deadline, whether access
    is restricted."""
    workflow_id = contract.remediation_workflow_id(remediation_id)
    return await read_state(
        temporal, session, principal, workflow_id, RemediationStatus, "remediation"
    )


async def _step(
    temporal: Temporal,
    session: Session,
    principal: Principal,
    remediation_id: str,
    update: str,
    body: RemediationStep,
) -> RemediationStatus:
    workflow_id = contract.remediation_workflow_id(remediation_id)
    return await send_step(
        temporal, session, principal, workflow_id, update, body, RemediationStatus, "remediation"
    )


def _route(path: str, update: str, doc: str, who: Role) -> None:
    async def step(
        remediation_id: str,
        body: RemediationStep,
        principal: Principal,
        session: SessionDep,
        temporal: TemporalDep,
    ) -> RemediationStatus:
        return await _step(temporal, session, principal, remediation_id, update, body)

    # Function-level authorization at the API (the workflow's validator checks again).
    step.__annotations__["principal"] = Annotated[Principal, Depends(require(who))]

    step.__doc__ = doc
    router.post(f"/{{remediation_id}}/{path}", response_model=RemediationStatus, name=update)(step)


_route("root-cause", "root_cause", "Identify the root cause (partner; M-9.1 step 1).", Role.PARTNER)
_route("plan", "plan", "Submit the remediation plan (partner; M-9.1 step 2).", Role.PARTNER)
_route("fixes", "fixes", "Report the fixes implemented (partner; M-9.1 step 3).", Role.PARTNER)
_route(
    "review",
    "review",
    "Re-validate: `passed` true restores access (SCO; M-9.1 step 4-5).",
    Role.SCO,
)
