"""Migrations: started by the bodies (or by a partner for an optional trigger on itself), carried
by the `PartnerMigration` workflow."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    field_validator,
)
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.deps import (
    After,
    AfterDeadline,
    CurrentPrincipal,
    Limit,
    ListOrder,
    PartnerDep,
    PolicyDep,
    Principal,
    SessionDep,
    SettingsDep,
    Temporal,
    TemporalDep,
    require,
)
from api.problems import Problem, not_found
from api.processes import (
    Accepted,
    ProcessSummary,
    decision_record,
    declared_in_matrix,
    read_state,
    send_step,
    start_once,
    summary,
    unless_restricted,
)
from kwanus import contract
from kwanus.hashing import canonical_sha256
from kwanus.models.migration import MigrationInput, MigrationStatus
from policy.access import may_start_while
from policy.decisions import Decision
from policy.forms import (
    FallbackDecision,
    MigrationDocumentationRequest,
    MigrationImplementationRequest,
    MigrationPlan,
    RolloutRequest,
    Withdrawal,
)
from policy.migration import (
    Governing,
    check_request,
    governing,
    partner_may_start,
)
from policy.types import Version
from policy.vocabulary import (
    MigrationStage,
    MigrationType,
    ProcessKind,
    ProcessStatus,
    Role,
    Trigger,
)
from store import repo
from store.records import ProcessRecord

router = APIRouter(prefix="/migrations", tags=["migrations"])

MigrationId = Annotated[str, StringConstraints(pattern=contract.CLIENT_ID)]
TargetKey = Annotated[
    str, StringConstraints(pattern=r"^(tier|os_version|api_version|runtime_name|runtime_version)$")
]
STARTERS = (Role.TSC, Role.SCO, Role.CGB, Role.ADMIN)


class MigrationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: MigrationId | None = Field(default=None, description="Client-chosen id (P-1).")
    partner_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
    trigger: Trigger
    type: MigrationType
    subtype: Annotated[str, StringConstraints(max_length=32)]
    target: dict[TargetKey, Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=dict, description="What the partner moves to (M-4.7)."
    )
    fallback_months: int | None = Field(
        default=None, ge=1, le=60, description="At least 6 (M-6.2); 12 by default."
    )
    expansion_id: str | None = Field(
        default=None, description="The approved expansion governing a permission expansion."
    )

    @field_validator("target")
    @classmethod
    def _versions_are_versions(cls, target: dict[str, str]) -> dict[str, str]:
        for key, value in target.items():
            if key.endswith("_version"):
                TypeAdapter(Version).validate_python(value)
        return target

    @field_validator("id")
    @classmethod
    def _not_a_process_id(cls, value: str | None) -> str | None:
        if value is not None and contract.is_system_migration_id(value):
            raise ValueError(
                "ids starting exp-, rem- or downgrade-, or holding '.', name the migrations "
                "processes start (P-1); choose another"
            )
        return value


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def start_migration(
    body: MigrationCreate,
    principal: CurrentPrincipal,
    policy: PolicyDep,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    response: Response,
) -> Accepted:
    """Start a migration (TSC, SCO, CGB, admin; a partner only for an optional trigger on
    itself, M-2.2). Refused with 422 naming the rule when the type, trigger, fallback or
    governance do not fit (M-3.1, M-3.2, M-6.2) — and whenever it would move a tier other than
    by governance: no one starts a tier upgrade by hand (E-7.1: an approved category B
    proposal's release starts it); a tier target only on a tier migration going down — the
    partner's own `tier_downgrade` or a forced one (E-7.2, M-2.2, M-2.3)."""
    if principal.role is Role.PARTNER:
        principal.ensure_sees(body.partner_id, "partner")
        may = partner_may_start(body.trigger)
        if not may.allowed:
            raise Problem.refused(may, "a partner starts only optional migrations (M-2.2)", 403)
    elif principal.role not in STARTERS:
        raise Problem(403, f"role {principal.role.value} may not start migrations")
    await unless_restricted(
        session,
        body.partner_id,
        lambda records: may_start_while(body.trigger, records),
        "no optional migration while restricted (M-9.2)",
    )
    partner = await run_in_threadpool(repo.get_partner, session=session, partner_id=body.partner_id)
    if partner is None:
        raise not_found("partner")
    governed_by = Governing.NONE
    if body.expansion_id:
        expansion = await run_in_threadpool(
            repo.expansion_status,
            session=session,
            workflow_id=contract.expansion_workflow_id(body.expansion_id),
        )
        if expansion is not None:
            governed_by = governing(
                same_partner=expansion.partner_id == body.partner_id,
                approved=expansion.approved,
                released=expansion.released,
            )
    refusal = check_request(
        trigger=body.trigger,
        type_=body.type,
        subtype=body.subtype,
        fallback_months=body.fallback_months,
        governed_by=governed_by,
        target=body.target,
        current_tier=partner.tier,
        policy=policy,
    )
    if not refusal.allowed:
        raise Problem.refused(refusal, "the migration breaks a governance rule")
    migration_id = body.id or secrets.token_hex(8)
    return await start_once(
        temporal,
        session,
        response,
        contract.MIGRATION,
        MigrationInput(
            migration_id=migration_id,
            partner_id=body.partner_id,
            trigger=body.trigger,
            type_=body.type,
            subtype=body.subtype,
            target=dict(body.target),
            fallback_months=body.fallback_months or policy.fallback_default_months,
            policy=policy,
            origin=contract.expansion_workflow_id(body.expansion_id) if body.expansion_id else None,
            requested_by=principal.actor,
        ),
        process_id=migration_id,
        task_queue=settings.task_queue,
        partner_id=body.partner_id,
        content_sha256=canonical_sha256(body),
        summary=f"Migration {migration_id} · partner {body.partner_id} · {body.trigger.value}",
        what="migration",
    )


@router.get("", response_model=list[ProcessSummary])
def list_migrations(
    principal: CurrentPrincipal,
    session: SessionDep,
    partner_id: Annotated[str | None, Query(max_length=64)] = None,
    stage: MigrationStage | None = None,
    status_: Annotated[ProcessStatus | None, Query(alias="status")] = None,
    after: After = None,
    order: ListOrder = "id",
    after_deadline: AfterDeadline = None,
    limit: Limit = 100,
) -> list[ProcessSummary]:
    """List migrations from the store (no Temporal query); a partner sees its own."""
    rows = repo.list_processes(
        session=session,
        kind=ProcessKind.MIGRATION,
        partner_id=principal.partner_id or partner_id,
        stage=stage,
        status=status_,
        after=after,
        limit=limit,
        summaries=True,
        by_deadline=order == "deadline",
        after_deadline=after_deadline,
    )
    return [summary(r) for r in rows]


@router.get("/{migration_id}/decision-record", response_model=ProcessRecord)
def get_decision_record(
    migration_id: str, principal: CurrentPrincipal, session: SessionDep
) -> ProcessRecord:
    """One exportable record of the migration: the sha256 of what was submitted, every review,
    vote, decision and step with who acted and the rules applied, the policy version and
    timestamps — served from the store, complete after the run has left Temporal."""
    return decision_record(
        session, principal, contract.migration_workflow_id(migration_id), "migration"
    )


@router.get("/{migration_id}", response_model=MigrationStatus)
async def get_migration(
    migration_id: str, principal: CurrentPrincipal, session: SessionDep, temporal: TemporalDep
) -> MigrationStatus:
    """A migration's state, from the store (P-8), including `fallback` {active, until}."""
    workflow_id = contract.migration_workflow_id(migration_id)
    return await read_state(temporal, session, principal, workflow_id, MigrationStatus, "migration")


async def _step(
    temporal: Temporal,
    session: Session,
    principal: Principal,
    migration_id: str,
    update: str,
    body: BaseModel,
    *,
    judge: Callable[[], Decision] | None = None,
) -> MigrationStatus:
    workflow_id = contract.migration_workflow_id(migration_id)
    return await send_step(
        temporal,
        session,
        principal,
        workflow_id,
        update,
        body,
        MigrationStatus,
        "migration",
        judge=judge,
    )


@router.post("/{migration_id}/plan", response_model=MigrationStatus)
async def plan(
    migration_id: str,
    body: MigrationPlan,
    principal: PartnerDep,
    session: SessionDep,
    temporal: TemporalDep,
) -> MigrationStatus:
    """Strategy, compatibility, testing and rollback plans (partner; M-4.2)."""
    return await _step(temporal, session, principal, migration_id, "plan", body)


@router.post("/{migration_id}/implementation", response_model=MigrationStatus)
async def implementation(
    migration_id: str,
    body: MigrationImplementationRequest,
    principal: PartnerDep,
    session: SessionDep,
    temporal: TemporalDep,
) -> MigrationStatus:
    """Development, testing, documentation done (partner; M-4.3), with the `manifest` the
    partner now ships — what validation inspects next (M-8.1): its API and OS versions against
    the target and the matrix, its workflows governed and on supported platform workflows, its
    permissions bounded, within the tier and granted, its runtime supported."""
    return await _step(temporal, session, principal, migration_id, "implementation", body)


@router.post("/{migration_id}/documentation", response_model=MigrationStatus)
async def documentation(
    migration_id: str,
    body: MigrationDocumentationRequest,
    principal: PartnerDep,
    session: SessionDep,
    temporal: TemporalDep,
) -> MigrationStatus:
    """The five required documents, each its own reference (partner; M-7.1)."""
    return await _step(temporal, session, principal, migration_id, "documentation", body)


@router.post("/{migration_id}/rollout", response_model=MigrationStatus)
async def rollout(
    migration_id: str,
    body: RolloutRequest,
    principal: PartnerDep,
    session: SessionDep,
    temporal: TemporalDep,
) -> MigrationStatus:
    """The versioned rollout (partner; M-4.5, M-5.2): a tier migration's tier moves here, and
    the fallback stays until completion. `compatibility` names the platform versions it works
    with, stored as the partner's own; a version the matrix does not list, or has retired, is
    refused (E-9.2)."""
    judge = declared_in_matrix(session, body.compatibility)
    return await _step(temporal, session, principal, migration_id, "rollout", body, judge=judge)


@router.post("/{migration_id}/decline", response_model=MigrationStatus)
async def decline(
    migration_id: str,
    principal: PartnerDep,
    session: SessionDep,
    temporal: TemporalDep,
    body: Withdrawal | None = None,
) -> MigrationStatus:
    """Decline an optional migration (partner; M-2.2); refused for required and forced ones."""
    return await _step(temporal, session, principal, migration_id, "decline", body or Withdrawal())


DeciderDep = Annotated[Principal, Depends(require(Role.TSC, Role.CGB))]


@router.post("/{migration_id}/fallback-decision", response_model=MigrationStatus)
async def fallback_decision(
    migration_id: str,
    body: FallbackDecision,
    principal: DeciderDep,
    session: SessionDep,
    temporal: TemporalDep,
) -> MigrationStatus:
    """TSC's or CGB's decision when the migration's telemetry is unhealthy, or missing, at its
    fallback's end (P-3, M-4.7): `extend` by `months` (within the policy's
    `fallback_max_months`), or `remediate` — what a missed deadline does too."""
    return await _step(temporal, session, principal, migration_id, "fallback_decision", body)
