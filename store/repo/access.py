"""A partner's access in effect (M-9.2, M-9.3, M-6.1): derived from its record, its remediations
and its migrations every time it is asked — never a flag another process can overwrite — and
SCO's restoration of access after a missed window (M-9.1 step 5), recorded once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from kwanus import contract
from kwanus.models.common import RecordEvent
from policy.access import (
    Access,
    Current,
    RemediationRecord,
    fallbacks_of,
    may_restore,
    permissions_in_effect,
    restriction,
    status,
)
from policy.decisions import Decision
from policy.vocabulary import MigrationType, PartnerStatus, ProcessKind, ProcessStatus
from store.repo.common import UnknownPartner
from store.repo.partners import get_partner, holdings
from store.repo.processes import _record_once, get_process, list_processes, state_of
from store.tables import AuditEvent, Partner, Process

RESTORED = "access_restored_by_sco"
ALL = 10_000  # a partner's migrations, read whole (indexed by partner)


def _restored_key(workflow_id: str) -> str:
    return f"{workflow_id}:restored"


def remediations_by_partner(
    *, session: Session, partner_ids: Sequence[str]
) -> dict[str, list[RemediationRecord]]:
    """Every remediation of each partner, as its access depends on it (one read for a page)."""
    rows = session.exec(
        select(Process)
        .where(col(Process.kind) == ProcessKind.REMEDIATION.value)
        .where(col(Process.partner_id).in_(list(partner_ids)))
        .order_by(col(Process.workflow_id))
    ).all()
    keys = {_restored_key(r.workflow_id) for r in rows}
    restored = (
        set(session.exec(select(AuditEvent.key).where(col(AuditEvent.key).in_(keys))).all())
        if keys
        else set()
    )
    out: dict[str, list[RemediationRecord]] = {p: [] for p in partner_ids}
    for row in rows:
        r = state_of(row, contract.REMEDIATION)
        if r is None:
            continue
        out.setdefault(row.partner_id, []).append(
            RemediationRecord(
                id=r.id,
                severity=r.severity,
                status=r.status,
                forced_migration=r.escalation_migration,
                restored=_restored_key(row.workflow_id) in restored,
            )
        )
    return out


def remediations_of(*, session: Session, partner_id: str) -> list[RemediationRecord]:
    return remediations_by_partner(session=session, partner_ids=[partner_id])[partner_id]


def statuses(*, session: Session, partner_ids: Sequence[str]) -> dict[str, PartnerStatus]:
    """Each partner's status as its remediations make it (M-9.2, M-9.3)."""
    records = remediations_by_partner(session=session, partner_ids=partner_ids)
    return {p: status(records[p]) for p in partner_ids}


def restriction_of(*, session: Session, partner_id: str) -> Decision:
    """Why the partner is restricted now (M-9.2, M-9.3); allowed when it is not."""
    return restriction(remediations_of(session=session, partner_id=partner_id))


def in_effect(*, session: Session, partner: Partner) -> list[str]:
    """The permissions in effect for the partner now: what it holds, only the `:read` ones while
    it is restricted (M-9.2) — what telemetry's misuse and monitoring judge use against."""
    restricted = not restriction_of(session=session, partner_id=partner.id).allowed
    return permissions_in_effect(holdings(partner).permissions, restricted)


def access(*, session: Session, partner_id: str) -> Access | None:
    """What the runtime enforces for the partner now: its status, tier, the capabilities held,
    the permissions in effect and each active migration's fallback (M-6.1, from its notice to
    its completion)."""
    partner = get_partner(session=session, partner_id=partner_id)
    if partner is None:
        return None
    held = holdings(partner)
    restricted = restriction_of(session=session, partner_id=partner_id)
    current = Current(
        tier=partner.tier,
        os_version=partner.os_version,
        api_version=partner.api_version,
        runtime_name=partner.runtime_name,
        runtime_version=partner.runtime_version,
    )
    fallbacks = []
    # By (kind, partner) only: with the status too, SQLite's planner takes the (kind, status)
    # index and walks every active migration (bench/RESULTS.md, the access view).
    for row in list_processes(
        session=session, kind=ProcessKind.MIGRATION, partner_id=partner_id, limit=ALL
    ):
        if row.status != ProcessStatus.ACTIVE.value:
            continue
        m = state_of(row, contract.MIGRATION)
        if m is None or not m.fallback.active:
            continue
        fallbacks += fallbacks_of(
            m.id,
            m.target,
            current=current,
            tier_left=m.tier_change.before if m.tier_change and m.tier_change.applied else None,
            kept=m.fallback.permissions,
            held=held.permissions,
            until=m.fallback.until,
        )
    return Access(
        partner_id=partner_id,
        status=PartnerStatus.ACTIVE if restricted.allowed else PartnerStatus.RESTRICTED,
        restricted_by=list(restricted.findings),
        tier=partner.tier,
        capabilities=list(held.capabilities),
        permissions=permissions_in_effect(held.permissions, not restricted.allowed),
        fallbacks=fallbacks,
    )


def _forced_applied(session: Session, migration_id: str | None) -> bool:
    if migration_id is None:
        return True
    row = get_process(session=session, workflow_id=contract.migration_workflow_id(migration_id))
    m = state_of(row, contract.MIGRATION)
    if m is None:
        return False
    return (
        m.status is ProcessStatus.COMPLETED
        or bool(m.tier_change and m.tier_change.applied)
        or (m.decision is not None and m.decision.outcome == "enforced")
        or (m.type_ is MigrationType.PERMISSION and m.rollout is not None)  # a reduction
    )


def restore(
    *, session: Session, partner_id: str, actor: str, reason: str, at: datetime
) -> tuple[Decision, list[str]]:
    """M-9.1 step 5: SCO restores the partner's access after its missed windows — each one's
    restoration a recorded decision (audit event), allowed once its forced outcome has been
    applied. Returns the refusal (nothing recorded) or the remediations restored."""
    if get_partner(session=session, partner_id=partner_id) is None:
        raise UnknownPartner(partner_id)
    missed = [
        (r, _forced_applied(session, r.forced_migration))
        for r in remediations_of(session=session, partner_id=partner_id)
        if r.status is ProcessStatus.EXPIRED and not r.restored
    ]
    refused = may_restore(missed)
    if not refused.allowed:
        return refused, []
    restored: list[str] = []
    for r, _ in missed:
        workflow_id = contract.remediation_workflow_id(r.id)
        row = get_process(session=session, workflow_id=workflow_id)
        event = RecordEvent(
            key=_restored_key(workflow_id),
            workflow_id=workflow_id,
            process=ProcessKind.REMEDIATION,
            process_id=r.id,
            partner_id=partner_id,
            event=RESTORED,
            actor=actor,
            at=at,
            stage=row.stage if row else "Remediation",
            status=ProcessStatus(row.status) if row else ProcessStatus.EXPIRED,
            rules=["M-9.1", "M-9.3"],
            data={"reason": reason, "forced_migration": r.forced_migration},
            policy_version=row.policy_version if row else 0,
        )
        if _record_once(session, event):
            restored.append(r.id)
    session.commit()
    return Decision(), restored
