"""The annual stewardship figures (E-13.1, M-10.1), computed from the store: expansion outcomes,
the migration review, compatibility-matrix proposals, the lifecycle picture and the partners
whose evidence trends the wrong way. Read-only but for the report row itself."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from kwanus import contract
from kwanus.models.stewardship import (
    ExpansionOutcomes,
    FallbackHeld,
    MatrixProposal,
    MigrationReview,
    PartnerTrend,
    StageTime,
    StewardshipFigures,
    StewardshipStatus,
)
from policy.document import PolicyContent
from policy.stewardship import accepted, trend, uses
from policy.vocabulary import ComponentKind, MatrixStatus, ProcessKind, ProcessStatus
from store import audit, repo
from store.tables import AuditEvent, CompatEntry, Partner, Process, StewardshipReport

YEAR = timedelta(days=365)
DAY_SECONDS = 86_400.0


def _processes(session: Session, kind: ProcessKind, since: datetime) -> list[Process]:
    return list(
        session.exec(
            select(Process)
            .where(col(Process.kind) == kind)
            .where(col(Process.created_at) >= since)
            .order_by(col(Process.workflow_id))
        ).all()
    )


def _events(session: Session, workflow_ids: list[str]) -> dict[str, list[AuditEvent]]:
    out: dict[str, list[AuditEvent]] = defaultdict(list)
    for start in range(0, len(workflow_ids), 500):
        chunk = workflow_ids[start : start + 500]
        for row in session.exec(
            select(AuditEvent)
            .where(col(AuditEvent.workflow_id).in_(chunk))
            .order_by(col(AuditEvent.id))
        ).all():
            out[row.workflow_id].append(row)
    return out


def expansion_outcomes(session: Session, since: datetime, now: datetime) -> ExpansionOutcomes:
    rows = _processes(session, ProcessKind.EXPANSION, since)
    events = _events(session, [r.workflow_id for r in rows])
    spent: dict[str, list[float]] = defaultdict(list)
    missed = escalations = 0
    for row in rows:
        log = events.get(row.workflow_id, [])
        missed += sum(1 for e in log if e.event == "deadline_missed")
        escalations += sum(1 for e in log if e.event == "escalated")
        changes = [e for e in log if e.event == "stage_changed"]
        end = repo.as_utc(row.updated_at) if row.status != ProcessStatus.ACTIVE else now
        for i, change in enumerate(changes):
            start = repo.as_utc(change.at)
            stop = repo.as_utc(changes[i + 1].at) if i + 1 < len(changes) else end
            if start is not None and stop is not None:
                spent[change.stage].append((stop - start).total_seconds() / DAY_SECONDS)
    return ExpansionOutcomes(
        total=len(rows),
        by_status=dict(sorted(Counter(r.status for r in rows).items())),
        by_category=dict(sorted(Counter(_category(r) for r in rows).items())),
        time_per_stage=[
            StageTime(stage=stage, processes=len(days), mean_days=round(sum(days) / len(days), 2))
            for stage, days in spent.items()
        ],
        deadlines_missed=missed,
        escalations=escalations,
    )


def _category(row: Process) -> str:
    expansion = repo.state_of(row, contract.EXPANSION)
    return expansion.category.value if expansion is not None else "?"


def migration_review(session: Session, since: datetime, now: datetime) -> MigrationReview:
    rows = _processes(session, ProcessKind.MIGRATION, since)
    active = [r for r in rows if r.status == ProcessStatus.ACTIVE]
    overdue = [
        r.process_id
        for r in active
        if r.next_deadline is not None and (repo.as_utc(r.next_deadline) or now) < now
    ]
    held = []
    for r in active:
        migration = repo.state_of(r, contract.MIGRATION)
        if migration is not None and migration.fallback.active:
            held.append(
                FallbackHeld(
                    migration_id=r.process_id,
                    partner_id=r.partner_id,
                    until=migration.fallback.until,
                )
            )
    return MigrationReview(
        total=len(rows),
        completed=sum(1 for r in rows if r.status == ProcessStatus.COMPLETED),
        overdue=overdue,
        fallbacks_active=held,
    )


def matrix_review(
    session: Session, partners: list[Partner]
) -> tuple[list[MatrixProposal], list[str]]:
    """E-13.1 / M-10.1 compatibility update: entries no partner uses may be retired; a partner
    on a runtime the matrix does not list is fragmentation (E-9.2)."""
    entries = list(
        session.exec(
            select(CompatEntry).order_by(
                col(CompatEntry.kind), col(CompatEntry.name), col(CompatEntry.version)
            )
        ).all()
    )
    manifests = repo.current_manifests(session=session, partners=partners)
    states = [repo.partner_state(p, manifests[p.id]) for p in partners]
    proposals = [
        MatrixProposal(
            kind=e.kind,
            name=e.name,
            version=e.version,
            proposal="retire",
            reason="no partner uses it",
        )
        for e in entries
        if e.status != MatrixStatus.RETIRED
        and not any(uses(p, e.kind, e.name, e.version) for p in states)
    ]
    listed = {(e.name, e.version) for e in entries if e.kind == ComponentKind.RUNTIME}
    unlisted = sorted(p.id for p in partners if (p.runtime_name, p.runtime_version) not in listed)
    return proposals, unlisted


def sustainability(
    session: Session, partners: list[Partner], now: datetime, policy: PolicyContent
) -> list[PartnerTrend]:
    """Partners whose evidence trends the wrong way: workflow success down or API errors up
    between the previous and the last evidence window, or violations in the year."""
    window = policy.tier_rules.evidence_window
    remediations = Counter(
        r.partner_id for r in _processes(session, ProcessKind.REMEDIATION, now - YEAR)
    )
    out = []
    for partner in partners:
        last = repo.telemetry_between(
            session=session, partner_id=partner.id, since=now - window, until=now
        )
        before = repo.telemetry_between(
            session=session, partner_id=partner.id, since=now - 2 * window, until=now - window
        )
        reasons = trend(before, last, remediations[partner.id])
        if reasons:
            out.append(PartnerTrend(partner_id=partner.id, reasons=reasons))
    return out


def compile_figures(
    *, session: Session, now: datetime, policy: PolicyContent
) -> StewardshipFigures:
    since = now - YEAR
    partners = list(session.exec(select(Partner).order_by(col(Partner.id))).all())
    proposals, unlisted = matrix_review(session, partners)
    lifecycle = {
        "tier": dict(sorted(Counter(p.tier for p in partners).items())),
        "os_version": dict(sorted(Counter(p.os_version for p in partners).items())),
        "api_version": dict(sorted(Counter(p.api_version for p in partners).items())),
        "status": dict(sorted(Counter(p.status for p in partners).items())),
    }
    return StewardshipFigures(
        period_start=since,
        period_end=now,
        expansion_outcomes=expansion_outcomes(session, since, now),
        migration_review=migration_review(session, since, now),
        matrix_proposals=proposals,
        unlisted_runtimes=unlisted,
        lifecycle=lifecycle,
        sustainability=sustainability(session, partners, now, policy),
    )


def save_report(
    *, session: Session, report_id: str, workflow_id: str, figures: StewardshipFigures
) -> StewardshipFigures:
    """Store the report once: a retried activity returns the figures first stored."""
    values = {
        "id": report_id,
        "workflow_id": workflow_id,
        "period_start": figures.period_start,
        "period_end": figures.period_end,
        "figures": figures.model_dump(mode="json"),
        "created_at": figures.period_end,
    }
    insert = repo.insert_for(session)
    session.execute(insert(StewardshipReport).values(**values).on_conflict_do_nothing())
    session.commit()
    row = session.get(StewardshipReport, report_id)
    assert row is not None
    return StewardshipFigures.model_validate(row.figures)


def list_reports(*, session: Session, limit: int = 100) -> list[StewardshipReport]:
    return list(
        session.exec(
            select(StewardshipReport)
            .order_by(col(StewardshipReport.created_at).desc())
            .limit(limit)
        ).all()
    )


def accept_matrix_proposals(
    *, session: Session, report: StewardshipStatus, actor: str
) -> list[dict[str, Any]]:
    """E-13.1 / M-10.1 / E-9.1: TSC accepts a report's compatibility-matrix proposals in one
    change, the report named as its source, once per report (AlreadyExists after)."""
    key = f"{report.workflow_id}:matrix-proposals"
    audit.lock(session)
    if audit.recorded(session, key):
        session.rollback()
        raise repo.AlreadyExists(f"report {report.id}'s proposals were accepted already")
    proposals = report.figures.matrix_proposals if report.figures else []
    entries = [
        e for p in proposals if (e := accepted(p.kind, p.name, p.version, p.proposal)) is not None
    ]
    return repo.change_matrix(
        session=session,
        entries=entries,
        actor=actor,
        reason=f"stewardship report {report.id}: its matrix proposals accepted",
        source=report.workflow_id,
        key=key,
    )
