"""Partners: admin data (registration), readable by every role (a partner: itself only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import (
    AdminDep,
    CurrentPrincipal,
    Limit,
    PlatformDep,
    PolicyDep,
    ScoDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    platform_may,
)
from api.problems import Problem, not_found
from api.processes import start_once
from kwanus import contract
from kwanus.hashing import canonical_sha256
from kwanus.models.migration import MigrationInput
from policy.access import Access
from policy.decisions import Decision, Finding
from policy.evidence import Telemetry
from policy.manifest import Manifest
from policy.partners import check_profile
from policy.remediation import forced_downgrade
from policy.tiers import telemetry_downgrade
from policy.validation import check_registration
from policy.vocabulary import Trigger
from store import repo
from store.schemas import ManifestPublic, ManifestVersion, PartnerCreate, PartnerPublic
from store.tables import utcnow

router = APIRouter(prefix="/partners", tags=["partners"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PartnerPublic)
def register_partner(
    body: PartnerCreate, _: AdminDep, session: SessionDep, policy: PolicyDep
) -> PartnerPublic:
    """Register a partner (admin), with its manifest: what its integration runs and asks for.
    The manifest's workflows must be governed by this registration's workflow grants, and its
    permissions bounded, within the tier and granted (M-8.1, M-8.2, E-5.2); afterwards it
    changes only through a migration whose validation passed it (M-4.7)."""
    decision = check_profile(
        tier=body.tier, permissions=body.permissions, grants=body.grants, policy=policy
    )
    if differs := body.manifest_differs():
        raise Problem(
            422, "the manifest's versions and runtime are the registration's", errors=differs
        )
    if body.manifest is not None:
        matrix = repo.compatibility_matrix(session=session)
        registered = check_registration(
            body.manifest, body.holdings, policy.tier(body.tier), matrix
        )
        decision = Decision.merge(decision, registered)
    if not decision.allowed:
        raise Problem.refused(decision, "the partner profile breaks a governance rule")
    try:
        row = repo.create_partner(session=session, partner=body)
    except repo.AlreadyExists:
        raise Problem(409, f"partner {body.id!r} is already registered") from None
    return repo.partner_public(row)


@router.get("", response_model=list[PartnerPublic])
@platform_may
def list_partners(
    principal: CurrentPrincipal,
    session: SessionDep,
    after: Annotated[
        str | None, Query(max_length=64, description="Last id of the previous page")
    ] = None,
    limit: Limit = 100,
) -> list[PartnerPublic]:
    """List partners by id (keyset pages); a partner sees only itself."""
    rows = repo.list_partners(session=session, after=after, limit=limit, only=principal.partner_id)
    ids = [r.id for r in rows]
    declared = repo.compatibility_of(session=session, partner_ids=ids)
    statuses = repo.statuses(session=session, partner_ids=ids)
    return [repo.partner_public(r, declared.get(r.id, ()), statuses[r.id]) for r in rows]


@router.get("/{partner_id}", response_model=PartnerPublic)
@platform_may
def get_partner(partner_id: str, principal: CurrentPrincipal, session: SessionDep) -> PartnerPublic:
    """One partner's profile: its tier and status, what it holds (`grants`, each with its kind
    and permissions; `permissions`, those in effect) and the compatibility its releases and
    rollouts declared."""
    principal.ensure_sees(partner_id, "partner")
    row = repo.get_partner(session=session, partner_id=partner_id)
    if row is None:
        raise not_found("partner")
    return repo.partner_public(
        row,
        repo.partner_compatibility(session=session, partner_id=partner_id),
        repo.statuses(session=session, partner_ids=[partner_id])[partner_id],
    )


@router.get("/{partner_id}/manifest", response_model=ManifestPublic)
@platform_may
def get_manifest(
    partner_id: str, principal: CurrentPrincipal, session: SessionDep
) -> ManifestPublic:
    """The partner's manifest — what its integration runs and asks for — with every earlier
    version: version 1 registered with the partner, each later one by the migration whose
    validation inspected it (M-8.1), at that migration's completion (M-4.7). Another
    partner's is 404."""
    principal.ensure_sees(partner_id, "partner")
    rows = repo.manifest_history(session=session, partner_id=partner_id)
    if not rows:
        raise not_found("partner")
    history = [
        ManifestVersion(
            version=r.version,
            manifest=Manifest.model_validate(r.manifest),
            source=r.source,
            registered_at=repo.as_utc(r.registered_at) or r.registered_at,
            validated_at=repo.as_utc(r.validated_at) or r.validated_at,
        )
        for r in rows
    ]
    return ManifestPublic(partner_id=partner_id, **history[0].model_dump(), history=history)


@router.get("/{partner_id}/access", response_model=Access)
@platform_may
def get_access(partner_id: str, principal: CurrentPrincipal, session: SessionDep) -> Access:
    """What the KWANUS OS runtime enforces for the partner now (M-9.2, M-6.1): its status (and
    what restricts it), tier, the capabilities held, the permissions in effect — only the
    `:read` ones while restricted — and each migration's fallback from its notice to its
    completion. From the store; another partner's is 404."""
    principal.ensure_sees(partner_id, "partner")
    found = repo.access(session=session, partner_id=partner_id)
    if found is None:
        raise not_found("partner")
    return found


class Restoration(BaseModel):
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


@router.post("/{partner_id}/restore", response_model=Access)
def restore_access(
    partner_id: str, body: Restoration, principal: ScoDep, session: SessionDep
) -> Access:
    """M-9.1 step 5 / M-9.3: SCO restores the access a missed remediation window held, once
    the forced outcome it started has been applied — a recorded decision (audit event on each
    remediation). 409 naming the rule while nothing can be restored."""
    try:
        refused, _ = repo.restore(
            session=session,
            partner_id=partner_id,
            actor=principal.actor,
            reason=body.reason,
            at=utcnow(),
        )
    except repo.UnknownPartner:
        raise not_found("partner") from None
    if not refused.allowed:
        raise Problem.refused(refused, "access cannot be restored now", 409)
    found = repo.access(session=session, partner_id=partner_id)
    assert found is not None
    return found


class ForcedDowngrade(BaseModel):
    """The forced tier downgrade a report set off (E-7.2), or the one already running."""

    migration_id: str
    trigger: Trigger
    findings: list[Finding]
    started: bool = Field(description="False when a forced downgrade was already under way.")


class TelemetryRecorded(BaseModel):
    id: int
    partner_id: str
    report: Telemetry
    downgrade: ForcedDowngrade | None = None


@router.post(
    "/{partner_id}/telemetry", status_code=status.HTTP_201_CREATED, response_model=TelemetryRecorded
)
@platform_may
async def report_telemetry(
    partner_id: str,
    body: Telemetry,
    principal: PlatformDep,
    session: SessionDep,
    policy: PolicyDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> TelemetryRecorded:
    """Record the platform's telemetry of a partner (role `platform` only: evidence comes from
    the platform, never the partner's own report, E-7.1; ops act on nothing). It is what
    monitoring (M-4.6) and tier decisions (E-7) are judged on. Failing workflows, instability
    or calls on permissions never granted (E-7.2) start a forced tier-downgrade migration
    (M-2.3) — one at a time per partner."""
    partner = await run_in_threadpool(repo.get_partner, session=session, partner_id=partner_id)
    if partner is None:
        raise not_found("partner")
    if body.period_end <= body.period_start:
        raise Problem(
            422, "the period ends before it starts", errors={"period_end": "after period_start"}
        )
    row = await run_in_threadpool(
        repo.add_telemetry,
        session=session,
        partner_id=partner_id,
        report=body,
        reported_by=principal.token_id,
        reporter_role=principal.role,
    )
    assert row.id is not None
    now = utcnow()
    evidence = await run_in_threadpool(
        repo.tier_evidence, session=session, partner_id=partner_id, now=now
    )
    found = telemetry_downgrade(evidence, now=now, policy=policy)
    downgrade = None
    if found is not None:
        trigger, decision = found
        running = await run_in_threadpool(
            repo.active_forced_downgrade, session=session, partner_id=partner_id
        )
        if running is not None:
            migration_id, started = running, False
        else:
            # One id per decision: a partner may be downgraded again after this one ends.
            stamp = f"{now:%Y%m%dT%H%M%S%f}"
            migration_id, started = contract.telemetry_downgrade_id(partner_id, stamp), True
            escalation = forced_downgrade(
                trigger, partner.tier, policy, tuple(sorted({*decision.rules, "M-2.3"}))
            )
            target = {"tier": escalation.target_tier} if escalation.target_tier else {}
            await start_once(
                temporal,
                session,
                None,  # answered as the telemetry it records, the migration named in it
                contract.MIGRATION,
                MigrationInput(
                    migration_id=migration_id,
                    partner_id=partner_id,
                    trigger=trigger,
                    type_=escalation.type_,
                    subtype=escalation.subtype,
                    target=target,
                    fallback_months=policy.fallback_default_months,
                    policy=policy,
                    origin=f"telemetry:{row.id}",
                    requested_by="system",
                ),
                process_id=migration_id,
                task_queue=settings.task_queue,
                partner_id=partner_id,
                content_sha256=canonical_sha256(
                    ForcedDowngrade(
                        migration_id=migration_id, trigger=trigger, findings=[], started=True
                    )
                ),
                summary=f"Migration {migration_id} · partner {partner_id} · {trigger.value}",
                what="migration",
            )
        downgrade = ForcedDowngrade(
            migration_id=migration_id,
            trigger=trigger,
            findings=list(decision.findings),
            started=started,
        )
    return TelemetryRecorded(id=row.id, partner_id=partner_id, report=body, downgrade=downgrade)
