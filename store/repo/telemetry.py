"""Telemetry and the tier evidence built from it (E-7.1, E-7.2): only the platform's reports
count."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from kwanus import contract
from policy.evidence import Telemetry, TierEvidence
from policy.remediation import as_violation
from policy.tiers import evidence_lookback
from policy.triggers import is_forced_downgrade
from policy.vocabulary import ProcessKind, ProcessStatus, Role
from store.repo.access import in_effect
from store.repo.common import as_utc
from store.repo.partners import get_partner
from store.repo.policies import current_policy
from store.repo.processes import list_processes, state_of
from store.tables import TelemetryReport, utcnow


def add_telemetry(
    *, session: Session, partner_id: str, report: Telemetry, reported_by: str, reporter_role: Role
) -> TelemetryReport:
    """Store one report with its reporter (a token id and its role): only the platform's
    reports are evidence (E-7.1)."""
    row = TelemetryReport(
        partner_id=partner_id,
        period_start=report.period_start,
        period_end=report.period_end,
        workflow_success_rate=report.workflow_success_rate,
        api_error_rate=report.api_error_rate,
        permission_usage=dict(report.permission_usage),
        deprecated_calls=report.deprecated_calls,
        calls_by_version=dict(report.calls_by_version),
        reported_by=reported_by,
        reporter_role=reporter_role.value,
        recorded_at=utcnow(),
    )
    session.add(row)
    session.commit()
    return row


def tier_evidence(*, session: Session, partner_id: str, now: datetime) -> TierEvidence:
    """E-7.1 / E-7.2 evidence as recorded: telemetry over the policy's evidence window (and the
    violation lookback, whichever is longer), every remediation as a violation (resolved when it
    completed), and the partner's grants."""
    policy = current_policy(session=session)
    telemetry = telemetry_between(
        session=session, partner_id=partner_id, since=now - evidence_lookback(policy), until=now
    )
    violations = []
    for row in list_processes(
        session=session, kind=ProcessKind.REMEDIATION, partner_id=partner_id, limit=10_000
    ):
        remediation = state_of(row, contract.REMEDIATION)
        if remediation is not None:
            violations.append(
                as_violation(
                    severity=remediation.severity,
                    opened_at=remediation.opened_at,
                    kind=remediation.kind,
                    origin=remediation.origin,
                    completed=remediation.status is ProcessStatus.COMPLETED,
                    closed_at=remediation.closed_at,
                )
            )
    partner = get_partner(session=session, partner_id=partner_id)
    return TierEvidence(
        telemetry=tuple(telemetry),
        violations=tuple(violations),
        granted_permissions=tuple(in_effect(session=session, partner=partner)) if partner else (),
        forced_downgrade=active_forced_downgrade(session=session, partner_id=partner_id),
    )


def active_forced_downgrade(*, session: Session, partner_id: str) -> str | None:
    """The id of a forced downgrade (tier or permission reduction) still running, if any."""
    # By (kind, partner) only: see store/repo/access.py on SQLite's choice of index.
    for row in list_processes(
        session=session, kind=ProcessKind.MIGRATION, partner_id=partner_id, limit=10_000
    ):
        if row.status != ProcessStatus.ACTIVE.value:
            continue
        migration = state_of(row, contract.MIGRATION)
        if migration is not None and is_forced_downgrade(migration.trigger, migration.subtype):
            return row.process_id
    return None


def telemetry_between(
    *, session: Session, partner_id: str, since: datetime, until: datetime
) -> list[Telemetry]:
    """The platform's reports whose period ended in (since, until], oldest first. Reports by
    anyone else (self-reported, from before reporters were recorded) are never evidence."""
    rows = session.exec(
        select(TelemetryReport)
        .where(col(TelemetryReport.partner_id) == partner_id)
        .where(col(TelemetryReport.reporter_role) == Role.PLATFORM.value)
        .where(col(TelemetryReport.period_end) > since)
        .where(col(TelemetryReport.period_end) <= until)
        .order_by(col(TelemetryReport.period_end))
    ).all()
    return [
        Telemetry(
            period_start=as_utc(r.period_start) or r.period_start,
            period_end=as_utc(r.period_end) or r.period_end,
            workflow_success_rate=r.workflow_success_rate,
            api_error_rate=r.api_error_rate,
            permission_usage=r.permission_usage,
            deprecated_calls=r.deprecated_calls,
            calls_by_version=r.calls_by_version,
        )
        for r in rows
    ]
