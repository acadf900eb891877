"""Typed, keyword-only repository functions: the only code that reads or writes tables."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, col, delete, func, select

from kwanus import contract
from kwanus.models.common import RecordEvent
from kwanus.models.expansion import ExpansionStatus, GrantInput, ReleaseInput
from kwanus.models.migration import (
    LifecycleInput,
    MigrationStatus,
    Notification,
    RolloutInput,
    TierChange,
    WithTier,
)
from kwanus.models.remediation import PartnerStatusInput
from policy.compatibility import deprecated_by
from policy.decisions import Decision, Finding
from policy.deprecation import DeprecationNotice
from policy.document import DEFAULT_POLICY, PolicyContent, PolicyDocument
from policy.evidence import (
    CompatibilityMatrix,
    MatrixEntry,
    PartnerState,
    PlatformRef,
    Telemetry,
    TierEvidence,
    Violation,
)
from policy.grants import (
    Grant,
    Holdings,
    change,
    governance_update,
    grantable,
    legacy_additions,
)
from policy.proposal import NewTier, with_new_tier
from policy.tiers import governed_upgrade, same_new_tier, tier_move, upgrade_still_eligible
from policy.vocabulary import PartnerStatus, ProcessKind, ProcessStatus, Role, Trigger
from store import audit
from store.schemas import (
    DeclaredCompatibility,
    PartnerCreate,
    PartnerPublic,
    Runtime,
    TokenCreate,
    TokenCreated,
    TokenPublic,
)
from store.tables import (
    ApiToken,
    AuditEvent,
    CompatChange,
    CompatEntry,
    NotificationRow,
    Partner,
    PartnerCompat,
    PendingAction,
    PolicyVersion,
    Process,
    TelemetryReport,
    utcnow,
)

TOKEN_PREFIX = "kw1"  # noqa: S105 (the token format tag, not a secret)


class AlreadyExists(Exception):
    """A row with this key exists already."""


class UnknownPartner(Exception):
    """The partner does not exist."""


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored datetime is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def insert_for(session: Session) -> Callable[..., Any]:
    """The dialect's INSERT, which knows ON CONFLICT and RETURNING on both databases."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"unsupported database dialect {name!r}")


# --- partners -------------------------------------------------------------------------------


def create_partner(*, session: Session, partner: PartnerCreate) -> Partner:
    row = Partner(
        id=partner.id,
        name=partner.name,
        tier=partner.tier,
        status=PartnerStatus.ACTIVE,
        os_version=partner.os_version,
        api_version=partner.api_version,
        runtime_name=partner.runtime.name,
        runtime_version=partner.runtime.version,
        created_at=utcnow(),
    )
    _set_holdings(row, partner.holdings)
    session.add(row)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise AlreadyExists(partner.id) from exc
    return row


def get_partner(*, session: Session, partner_id: str) -> Partner | None:
    return session.get(Partner, partner_id)


def list_partners(
    *, session: Session, after: str | None = None, limit: int = 100, only: str | None = None
) -> Sequence[Partner]:
    """Keyset pagination by id; `only` restricts the list to one partner (a partner's view)."""
    query = select(Partner).order_by(col(Partner.id)).limit(limit)
    if after is not None:
        query = query.where(col(Partner.id) > after)
    if only is not None:
        query = query.where(col(Partner.id) == only)
    return session.exec(query).all()


def holdings(row: Partner) -> Holdings:
    """What the partner holds: its grants and the permissions registered with it."""
    return Holdings(
        grants=tuple(Grant.model_validate(g) for g in row.grants),
        registered=tuple(row.registered_permissions),
    )


def _set_holdings(row: Partner, held: Holdings) -> None:
    row.grants = [g.model_dump(mode="json") for g in held.grants]
    row.registered_permissions = list(held.registered)


def partner_public(row: Partner, compatibility: Sequence[PartnerCompat] = ()) -> PartnerPublic:
    held = holdings(row)
    return PartnerPublic(
        id=row.id,
        name=row.name,
        tier=row.tier,
        status=PartnerStatus(row.status),
        os_version=row.os_version,
        api_version=row.api_version,
        runtime=Runtime(name=row.runtime_name, version=row.runtime_version),
        capabilities=list(held.capabilities),
        permissions=list(held.permissions),
        grants=list(held.grants),
        registered_permissions=list(held.registered),
        compatibility=[
            DeclaredCompatibility(
                kind=c.kind,
                name=c.name,
                version=c.version,
                release=c.release,
                source=c.source,
                declared_at=as_utc(c.declared_at) or c.declared_at,
            )
            for c in compatibility
        ],
        created_at=as_utc(row.created_at) or row.created_at,
    )


# --- tokens ---------------------------------------------------------------------------------


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(*, session: Session, token: TokenCreate) -> TokenCreated:
    """A new bearer token `kw1.<id>.<secret>`; only sha256(secret) is stored, the token itself is
    returned once."""
    if token.partner_id is not None and session.get(Partner, token.partner_id) is None:
        raise UnknownPartner(token.partner_id)
    token_id = "tok_" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = ApiToken(
        id=token_id,
        secret_sha256=_digest(secret),
        role=token.role,
        partner_id=token.partner_id,
        label=token.label,
        created_at=utcnow(),
        expires_at=token.expires_at,
    )
    session.add(row)
    session.commit()
    return TokenCreated(
        id=row.id,
        role=token.role,
        partner_id=row.partner_id,
        label=row.label,
        created_at=row.created_at,
        expires_at=row.expires_at,
        token=f"{TOKEN_PREFIX}.{token_id}.{secret}",
    )


def authenticate(*, session: Session, raw: str, now: datetime) -> ApiToken | None:
    """The live token behind a bearer string, or None. The lookup is by the public id and the
    secret is compared in constant time, so response time reveals nothing about the secret."""
    parts = raw.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    row = session.get(ApiToken, parts[1])
    if row is None or not hmac.compare_digest(row.secret_sha256, _digest(parts[2])):
        return None
    if row.revoked_at is not None:
        return None
    expires = as_utc(row.expires_at)
    if expires is not None and expires <= now:
        return None
    return row


def revoke_token(*, session: Session, token_id: str, now: datetime) -> ApiToken | None:
    """Revoke a token (it fails authentication from now on); None when there is no such token.
    Revoking twice keeps the first time."""
    row = session.get(ApiToken, token_id)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
        session.commit()
    return row


def list_tokens(*, session: Session, limit: int = 100) -> Sequence[ApiToken]:
    return session.exec(select(ApiToken).order_by(col(ApiToken.created_at)).limit(limit)).all()


def token_public(row: ApiToken) -> TokenPublic:
    return TokenPublic(
        id=row.id,
        role=Role(row.role),
        partner_id=row.partner_id,
        label=row.label,
        created_at=as_utc(row.created_at) or row.created_at,
        expires_at=as_utc(row.expires_at),
        revoked_at=as_utc(row.revoked_at),
    )


def role_of(token: ApiToken) -> Role:
    return Role(token.role)


# --- processes and the audit log (written only by workflow activities) ----------------------


def _audit_row(event: RecordEvent) -> dict[str, Any]:
    return {
        "key": event.key,
        "at": event.at,
        "recorded_at": utcnow(),
        "workflow_id": event.workflow_id,
        "process": event.process.value,
        "process_id": event.process_id,
        "partner_id": event.partner_id,
        "event": event.event,
        "actor": event.actor,
        "stage": event.stage,
        "rules": list(event.rules),
        "data": event.data,
    }


def _append_audit(session: Session, event: RecordEvent) -> bool:
    """Append the event's row to the audit chain unless its key is taken (then roll back and
    say so): a retried activity changes nothing."""
    appended = audit.append(session, _audit_row(event))
    if not appended:
        session.rollback()
    return appended


def _record(session: Session, event: RecordEvent) -> bool:
    """Append the audit row and apply its projection, uncommitted; False (and nothing written)
    if the key is taken."""
    if not audit.append(session, _audit_row(event)):
        return False
    insert = insert_for(session)
    awaiting = [a.model_dump(mode="json") for a in event.awaiting]
    projection = insert(Process).values(
        workflow_id=event.workflow_id,
        kind=event.process,
        process_id=event.process_id,
        partner_id=event.partner_id,
        stage=event.stage,
        status=event.status,
        next_deadline=event.next_deadline,
        awaiting=awaiting,
        policy_version=event.policy_version,
        state=event.state,
        created_at=event.at,
        updated_at=event.at,
    )
    table = Process.__table__.c  # type: ignore[attr-defined]
    projection = projection.on_conflict_do_update(
        index_elements=["workflow_id"],
        set_={
            "stage": projection.excluded.stage,
            "status": projection.excluded.status,
            "next_deadline": projection.excluded.next_deadline,
            "awaiting": projection.excluded.awaiting,
            "state": projection.excluded.state,
            "updated_at": projection.excluded.updated_at,
        },
        # Events of one run can commit out of order (an Update's record and the run's own, in
        # flight at once): the projection keeps the state of the latest event in workflow time,
        # and a closed process stays closed — an event of the same instant (a review accepted
        # with the withdrawal) landing after the closing one cannot reopen it.
        where=(table.updated_at <= projection.excluded.updated_at)
        & (
            (table.status == ProcessStatus.ACTIVE.value)
            | (projection.excluded.status != ProcessStatus.ACTIVE.value)
        ),
    ).returning(table.workflow_id)
    if session.execute(projection).first() is None:
        return True  # on record in the log; the projection already shows a later event
    # The inbox: exactly who this process awaits now.
    session.execute(
        delete(PendingAction).where(col(PendingAction.workflow_id) == event.workflow_id)
    )
    if event.status is ProcessStatus.ACTIVE:
        session.add_all(
            PendingAction(
                workflow_id=event.workflow_id,
                kind=event.process,
                process_id=event.process_id,
                partner_id=event.partner_id,
                stage=event.stage,
                actor=a.actor,
                action=a.action,
                deadline=a.deadline,
            )
            for a in event.awaiting
        )
    return True


def record_event(*, session: Session, event: RecordEvent) -> bool:
    """Append the audit row and apply the projection in one transaction. Returns whether this call
    wrote it: a retried activity finds the key taken and changes nothing (P-4)."""
    (written,) = record_events(session=session, events=[event])
    return written


def record_events(*, session: Session, events: Sequence[RecordEvent]) -> list[bool]:
    """Several events of one process, in order, each with its projection, in one transaction
    (the last one's projection stands). Returns, per event, whether this call wrote it: a key
    already taken is skipped, so a retried activity writes each row once (P-4)."""
    written = [_record(session, event) for event in events]
    if any(written):
        session.commit()
    else:
        session.rollback()
    return written


def audit_data(*, session: Session, key: str) -> dict[str, Any] | None:
    """The `data` of the audit row under `key`, if it is on record."""
    row = session.exec(select(AuditEvent.data).where(col(AuditEvent.key) == key)).first()
    return dict(row) if row is not None else None


def count_audit_keys(*, session: Session, keys: Sequence[str]) -> int:
    """How many of `keys` are in the audit log (the unique index on `key` answers it)."""
    if not keys:
        return 0
    query = select(func.count()).select_from(AuditEvent).where(col(AuditEvent.key).in_(keys))
    return int(session.exec(query).one())


def pending(
    *,
    session: Session,
    actor: str | None = None,
    overdue_at: datetime | None = None,
    limit: int = 100,
) -> Sequence[PendingAction]:
    """What awaits `actor` (or, with `overdue_at`, everything past its deadline), soonest first;
    actions without a deadline last."""
    query = select(PendingAction)
    if actor is not None:
        query = query.where(col(PendingAction.actor) == actor)
    if overdue_at is not None:
        query = query.where(col(PendingAction.deadline) < overdue_at)
    query = query.order_by(
        col(PendingAction.deadline).is_(None),
        col(PendingAction.deadline),
        col(PendingAction.id),
    )
    return session.exec(query.limit(limit)).all()


def get_process(*, session: Session, workflow_id: str) -> Process | None:
    return session.get(Process, workflow_id)


def expansion_status(*, session: Session, workflow_id: str) -> ExpansionStatus | None:
    """An expansion's last state as its projection keeps it, if it is an expansion's."""
    row = get_process(session=session, workflow_id=workflow_id)
    if row is None or row.kind != ProcessKind.EXPANSION.value or not row.state:
        return None
    return ExpansionStatus.model_validate(row.state)


def count_open(*, session: Session, kind: ProcessKind, partner_id: str) -> int:
    return session.exec(
        select(func.count())
        .select_from(Process)
        .where(col(Process.kind) == kind)
        .where(col(Process.partner_id) == partner_id)
        .where(col(Process.status) == ProcessStatus.ACTIVE.value)
    ).one()


def list_processes(
    *,
    session: Session,
    kind: ProcessKind,
    partner_id: str | None = None,
    stage: str | None = None,
    status: str | None = None,
    after: str | None = None,
    limit: int = 100,
    summaries: bool = False,
) -> Sequence[Process]:
    """Keyset pages ordered by workflow id, filtered on indexed columns. `summaries` leaves out
    each row's `state` (the workflow's whole last status): a list page does not show it, and
    decoding a hundred of them made the API's garbage collector the p99 (bench/RESULTS.md)."""
    query = select(Process).where(col(Process.kind) == kind).order_by(col(Process.workflow_id))
    if summaries:
        query = query.options(defer(Process.state))  # type: ignore[arg-type]
    if partner_id is not None:
        query = query.where(col(Process.partner_id) == partner_id)
    if stage is not None:
        query = query.where(col(Process.stage) == stage)
    if status is not None:
        query = query.where(col(Process.status) == status)
    if after is not None:
        query = query.where(col(Process.workflow_id) > after)
    return session.exec(query.limit(limit)).all()


def audit_page(
    *,
    session: Session,
    partner_id: str | None,
    workflow_id: str | None,
    after: int | None,
    limit: int,
) -> Sequence[AuditEvent]:
    query = select(AuditEvent).order_by(col(AuditEvent.seq)).limit(limit)
    if partner_id is not None:
        query = query.where(col(AuditEvent.partner_id) == partner_id)
    if workflow_id is not None:
        query = query.where(col(AuditEvent.workflow_id) == workflow_id)
    if after is not None:
        query = query.where(col(AuditEvent.seq) > after)
    return session.exec(query).all()


def audit_events(
    *, session: Session, workflow_id: str | None = None, partner_id: str | None = None
) -> Sequence[AuditEvent]:
    query = select(AuditEvent).order_by(col(AuditEvent.id))
    if workflow_id is not None:
        query = query.where(col(AuditEvent.workflow_id) == workflow_id)
    if partner_id is not None:
        query = query.where(col(AuditEvent.partner_id) == partner_id)
    return session.exec(query).all()


# --- policy versions ------------------------------------------------------------------------


def current_policy(*, session: Session) -> PolicyDocument:
    """The version in force: the highest stored, or the shipped defaults (version 1)."""
    row = session.exec(
        select(PolicyVersion).order_by(col(PolicyVersion.version).desc()).limit(1)
    ).first()
    if row is None:
        return DEFAULT_POLICY
    return PolicyDocument.model_validate({**row.document, "version": row.version})


def add_tier(*, session: Session, event: RecordEvent, new_tier: NewTier) -> int | None:
    """E-7.3: a new policy version whose catalogue has `new_tier`, audited by `event`. Returns the
    version, or None when the tier is already there (a retried activity)."""
    current = current_policy(session=session)
    if new_tier.spec.name in current.tier_names:
        return None
    doc = save_policy(
        session=session, content=with_new_tier(current, new_tier), actor=event.workflow_id
    )
    if _append_audit(
        session, event.model_copy(update={"data": {**event.data, "policy": doc.version}})
    ):
        session.commit()
    return doc.version


def save_policy(*, session: Session, content: PolicyContent, actor: str) -> PolicyDocument:
    """Store `content` as the next version and audit the change. Two concurrent saves cannot
    both take the same number (primary key): the loser gets AlreadyExists."""
    current = current_policy(session=session)
    doc = PolicyDocument.model_validate({**content.model_dump(), "version": current.version + 1})
    now = utcnow()
    body = doc.model_dump(mode="json", exclude={"version"})
    session.add(PolicyVersion(version=doc.version, document=body, created_at=now, created_by=actor))
    audit.append(
        session,
        {
            "key": f"policy:v{doc.version}",
            "at": now,
            "recorded_at": now,
            "workflow_id": "policy",
            "process": "policy",
            "process_id": str(doc.version),
            "partner_id": "",
            "event": "policy_changed",
            "actor": actor,
            "stage": "",
            "rules": ["P-5"],
            "data": {"version": doc.version, "previous": current.version},
        },
    )
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise AlreadyExists(f"policy version {doc.version}") from exc
    return doc


# --- telemetry, grants and the compatibility matrix -----------------------------------------


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
    lookback = max(policy.tier_rules.evidence_window, policy.tier_rules.violation_lookback)
    telemetry = telemetry_between(
        session=session, partner_id=partner_id, since=now - lookback, until=now
    )
    violations = []
    for row in list_processes(
        session=session, kind=ProcessKind.REMEDIATION, partner_id=partner_id, limit=10_000
    ):
        state = row.state or {}
        if "severity" not in state or "opened_at" not in state:
            continue
        resolved = row.status == ProcessStatus.COMPLETED.value
        violations.append(
            Violation(
                at=state["opened_at"],
                severity=state["severity"],
                kind=state.get("kind") or "violation",
                resolved_at=state.get("closed_at") if resolved else None,
                origin=state.get("origin"),
            )
        )
    partner = get_partner(session=session, partner_id=partner_id)
    return TierEvidence(
        telemetry=tuple(telemetry),
        violations=tuple(violations),
        granted_permissions=holdings(partner).permissions if partner else (),
        forced_downgrade=active_forced_downgrade(session=session, partner_id=partner_id),
    )


FORCED = frozenset(
    {
        Trigger.COMPLIANCE_VIOLATION.value,
        Trigger.SECURITY_VIOLATION.value,
        Trigger.PARTNER_INSTABILITY.value,
    }
)


def active_forced_downgrade(*, session: Session, partner_id: str) -> str | None:
    """The id of a forced downgrade (tier or permission reduction) still running, if any."""
    for row in list_processes(
        session=session,
        kind=ProcessKind.MIGRATION,
        partner_id=partner_id,
        status=ProcessStatus.ACTIVE.value,
        limit=10_000,
    ):
        state = row.state or {}
        if state.get("trigger") in FORCED and state.get("subtype") in ("downgrade", "reduction"):
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


def partner_state(row: Partner) -> PartnerState:
    held = holdings(row)
    return PartnerState(
        partner_id=row.id,
        tier=row.tier,
        os_version=row.os_version,
        api_version=row.api_version,
        runtime_name=row.runtime_name,
        runtime_version=row.runtime_version,
        capabilities=held.capabilities,
        permissions=held.permissions,
        grants=held.grants,
    )


def _locked_partner(session: Session, partner_id: str) -> Partner:
    """The partner's row, locked for the transaction (after the audit chain's head: see
    audit.lock)."""
    partner = session.get(Partner, partner_id, with_for_update=True)
    if partner is None:
        session.rollback()
        raise UnknownPartner(partner_id)
    return partner


def _first_time(session: Session, key: str) -> bool:
    """Lock the audit chain's head for the transaction (audit.lock) and say whether `key` is
    still free; if it is taken — a retried activity — roll back: nothing more to do (P-4)."""
    audit.lock(session)
    if audit.recorded(session, key):
        session.rollback()
        return False
    return True


def _change_holdings(
    session: Session,
    event: RecordEvent,
    partner_id: str,
    update: Callable[[Partner, Holdings], tuple[Holdings, dict[str, Any]]],
    *,
    release: str,
    declared: Sequence[PlatformRef],
) -> bool:
    """A governed change of what the partner holds, once per key: `update` applied to what it
    holds *now* (read under the audit chain's lock, so no other governed change lands in
    between), its declared compatibility stored as its own (E-9.2), and the event recording
    before, after, added and removed (and what `update` adds to it) — in one transaction."""
    if not _first_time(session, event.key):
        return False
    partner = _locked_partner(session, partner_id)
    before = holdings(partner)
    after, extra = update(partner, before)
    data = {
        **event.data,
        **change(before, after).model_dump(mode="json"),
        **extra,
        "declared": _declare(session, partner_id, event, release, declared),
    }
    _append_audit(session, event.model_copy(update={"data": data}))
    _set_holdings(partner, after)
    session.add(partner)
    session.commit()
    return True


def _granted(
    session: Session, partner: Partner, held: Holdings, add: Sequence[Grant], removes: Sequence[str]
) -> tuple[Holdings, list[Finding]]:
    """E-2.7: what the partner holds with exactly `removes` taken away and what may be granted
    now added (E-7.4 against the tier in effect, E-6.1); the rest withheld, with why."""
    tier = current_policy(session=session).tier(partner.tier)
    ok, withheld = grantable(held, add, removes, tier)
    return governance_update(held, add=ok, removes=removes), withheld


def release_grants(*, session: Session, inp: ReleaseInput) -> bool:
    """E-2.7: the release's governance update — the approved grants added, exactly `removes`
    taken away; no tier and no platform row changes. A grant the tier in effect does not allow
    (it moved since the vote) is withheld, and named in the event."""

    def update(partner: Partner, held: Holdings) -> tuple[Holdings, dict[str, Any]]:
        after, withheld = _granted(session, partner, held, inp.add, inp.removes)
        return after, {"withheld": [f"{f.field}: {f.message} ({f.rule})" for f in withheld]}

    return _change_holdings(
        session, inp.event, inp.partner_id, update, release=inp.release, declared=inp.declared
    )


def apply_grant(*, session: Session, grant: GrantInput) -> bool:
    """A release as runs released before E-2.7's decision sent it, in flight at a deploy: its
    event's `removed` taken away and what it names added; neither the tier nor a platform row
    moves."""
    removes = [str(r) for r in grant.event.data.get("removed", [])]
    return _change_holdings(
        session,
        grant.event,
        grant.partner_id,
        lambda _, held: (
            legacy_additions(held, grant.capabilities, grant.permissions, removes),
            {},
        ),
        release="",
        declared=grant.compatibility,
    )


def _declare(
    session: Session,
    partner_id: str,
    event: RecordEvent,
    release: str,
    refs: Sequence[PlatformRef],
) -> list[dict[str, str]]:
    """Store a release's or rollout's declared compatibility as the partner's own (E-9.2), once
    per (process, entry). Returns what was declared, for the audit event."""
    insert = insert_for(session)
    out = []
    for ref in refs:
        stmt = (
            insert(PartnerCompat)
            .values(
                partner_id=partner_id,
                source=event.workflow_id,
                release=release,
                kind=ref.kind.value,
                name=ref.name,
                version=ref.version,
                declared_at=event.at,
                audit_key=event.key,
            )
            .on_conflict_do_nothing(index_elements=["source", "kind", "name", "version"])
        )
        session.execute(stmt)
        out.append({"kind": ref.kind.value, "name": ref.name, "version": ref.version})
    return out


def compatibility_of(
    *, session: Session, partner_ids: Sequence[str]
) -> dict[str, list[PartnerCompat]]:
    """`partner_compatibility` for a page of partners, in one query."""
    out: dict[str, list[PartnerCompat]] = {}
    if not partner_ids:
        return out
    rows = session.exec(
        select(PartnerCompat)
        .where(col(PartnerCompat.partner_id).in_(partner_ids))
        .order_by(col(PartnerCompat.declared_at).desc(), col(PartnerCompat.id).desc())
    ).all()
    for row in rows:
        out.setdefault(row.partner_id, []).append(row)
    return out


def partner_compatibility(*, session: Session, partner_id: str) -> Sequence[PartnerCompat]:
    """What the partner's releases and rollouts declared they work with, newest first."""
    return session.exec(
        select(PartnerCompat)
        .where(col(PartnerCompat.partner_id) == partner_id)
        .order_by(col(PartnerCompat.declared_at).desc(), col(PartnerCompat.id).desc())
    ).all()


def _upsert_matrix(
    session: Session,
    entries: Sequence[MatrixEntry],
    *,
    source: str,
    actor: str,
    audit_key: str,
    at: datetime,
) -> list[dict[str, Any]]:
    """Apply matrix entries; every entry that changes is numbered in the history (E-9, never
    silently). Returns the changes, for the audit event that carries them."""
    insert = insert_for(session)
    version = matrix_version(session=session)
    changes: list[dict[str, Any]] = []
    for entry in entries:
        row = session.get(CompatEntry, (entry.kind.value, entry.name, entry.version))
        if row is not None and row.status == entry.status.value:
            continue
        stmt = insert(CompatEntry).values(
            kind=entry.kind.value,
            name=entry.name,
            version=entry.version,
            status=entry.status.value,
            updated_at=at,
            updated_by=source,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["kind", "name", "version"],
            set_={"status": stmt.excluded.status, "updated_at": at, "updated_by": source},
        )
        session.execute(stmt)
        version += 1
        change: dict[str, Any] = {
            "kind": entry.kind.value,
            "name": entry.name,
            "version": entry.version,
            "status": entry.status.value,
            "previous": row.status if row is not None else None,
        }
        session.add(
            CompatChange(
                matrix_version=version,
                kind=entry.kind.value,
                name=entry.name,
                version=entry.version,
                status=entry.status.value,
                previous=change["previous"],
                at=at,
                source=source,
                actor=actor,
                audit_key=audit_key,
            )
        )
        changes.append({**change, "matrix_version": version})
    return changes


def matrix_version(*, session: Session) -> int:
    latest = session.exec(select(func.max(CompatChange.matrix_version))).one()
    return int(latest or 0)


def change_matrix(
    *, session: Session, entries: Sequence[MatrixEntry], actor: str, reason: str
) -> list[dict[str, Any]]:
    """TSC's direct change (`PUT /v1/compatibility-matrix`): the entries and one audit event
    naming who and why, in one transaction. Nothing changed → nothing written."""
    now = utcnow()
    key = f"compatibility-matrix:v{matrix_version(session=session) + 1}"
    changes = _upsert_matrix(
        session, entries, source="compatibility-matrix", actor=actor, audit_key=key, at=now
    )
    if not changes:
        session.rollback()
        return []
    audit.append(
        session,
        {
            "key": key,
            "at": now,
            "recorded_at": now,
            "workflow_id": "compatibility-matrix",
            "process": "matrix",
            "process_id": str(changes[-1]["matrix_version"]),
            "partner_id": "",
            "event": "matrix_changed",
            "actor": actor,
            "stage": "",
            "rules": ["E-9.1", "M-5.1"],
            "data": {"reason": reason, "changes": changes},
        },
    )
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise AlreadyExists("another matrix change landed first") from exc
    return changes


def update_matrix(*, session: Session, event: RecordEvent, entries: Sequence[PlatformRef]) -> bool:
    """A rollout's matrix entries as runs rolled out before E-9.2's decision sent them, in flight
    at a deploy: stored as the partner's own compatibility — never the platform's rows — with
    the event, once per key."""
    if not _first_time(session, event.key):
        return False
    declared = _declare(session, event.partner_id, event, "", entries)
    _append_audit(session, event.model_copy(update={"data": {**event.data, "declared": declared}}))
    session.commit()
    return True


PLATFORM_SEED = "platform-seed"


def seed_platform_matrix(
    *, session: Session, entries: Sequence[MatrixEntry]
) -> list[dict[str, Any]]:
    """The versions the product ships (store/platform-matrix.json), added where the matrix does
    not list them yet — never changing a row that is there (TSC's later calls stand) — numbered
    in the history and audited as the platform's. Nothing new → nothing written."""
    audit.lock(session)
    missing = [
        e for e in entries if session.get(CompatEntry, (e.kind.value, e.name, e.version)) is None
    ]
    if not missing:
        session.rollback()
        return []
    now = utcnow()
    key = f"{PLATFORM_SEED}:v{matrix_version(session=session) + 1}"
    changes = _upsert_matrix(
        session, missing, source=PLATFORM_SEED, actor="kwanus", audit_key=key, at=now
    )
    audit.append(
        session,
        {
            "key": key,
            "at": now,
            "recorded_at": now,
            "workflow_id": PLATFORM_SEED,
            "process": "matrix",
            "process_id": str(changes[-1]["matrix_version"]),
            "partner_id": "",
            "event": "matrix_seeded",
            "actor": "kwanus",
            "stage": "",
            "rules": ["E-9.1", "M-5.1"],
            "data": {"changes": changes},
        },
    )
    session.commit()
    return changes


def record_deprecation(*, session: Session, event: RecordEvent, notice: DeprecationNotice) -> bool:
    """A deprecation notice on record (with its projection), and the version it deprecates marked
    `deprecated` in the platform's matrix (M-5.1), in one transaction, once per key."""
    if not _first_time(session, event.key):
        return False
    entries = deprecated_by(notice, compatibility_matrix(session=session))
    changes = _upsert_matrix(
        session,
        entries,
        source=event.workflow_id,
        actor=event.actor,
        audit_key=event.key,
        at=event.at,
    )
    _record(session, event.model_copy(update={"data": {**event.data, "matrix": changes}}))
    session.commit()
    return True


def matrix_history(*, session: Session, limit: int = 100) -> Sequence[CompatChange]:
    return session.exec(
        select(CompatChange).order_by(col(CompatChange.matrix_version).desc()).limit(limit)
    ).all()


def compatibility_matrix(*, session: Session) -> CompatibilityMatrix:
    rows = session.exec(
        select(CompatEntry).order_by(
            col(CompatEntry.kind), col(CompatEntry.name), col(CompatEntry.version)
        )
    ).all()
    return CompatibilityMatrix(
        version=matrix_version(session=session),
        entries=tuple(
            MatrixEntry(kind=r.kind, name=r.name, version=r.version, status=r.status) for r in rows
        ),
    )


# --- notifications and the partner's lifecycle record ---------------------------------------


def notify(*, session: Session, note: Notification) -> bool:
    """Write a notification once per key; returns whether this call wrote it."""
    insert = insert_for(session)
    stmt = (
        insert(NotificationRow)
        .values(
            key=note.key,
            partner_id=note.partner_id,
            process_id=note.process_id,
            kind=note.kind,
            message=note.message,
            at=note.at,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(NotificationRow.__table__.c.id)  # type: ignore[attr-defined]
    )
    written = session.execute(stmt).first() is not None
    session.commit()
    return written


def notifications(*, session: Session, partner_id: str) -> Sequence[NotificationRow]:
    query = (
        select(NotificationRow)
        .where(col(NotificationRow.partner_id) == partner_id)
        .order_by(col(NotificationRow.id))
    )
    return session.exec(query).all()


LIFECYCLE_FIELDS = ("tier", "os_version", "api_version", "runtime_name", "runtime_version")


def _tier_change(
    session: Session,
    partner: Partner,
    *,
    migration_id: str,
    target: str,
    trigger: Trigger,
    subtype: str,
    origin: str | None,
    with_tier: WithTier | None,
) -> TierChange:
    """Judge a tier migration's move against the tier in effect now (E-7.1, E-7.2) and apply
    it if it holds. A rise is governed when it is the migration an approved category-B
    expansion of this partner started at its release, from the tier the partner is on now;
    and E-7.1's recorded evidence must still hold when the tier rises."""
    expansion = expansion_status(session=session, workflow_id=origin) if origin else None
    governed = expansion is not None and governed_upgrade(
        same_partner=expansion.partner_id == partner.id,
        category=expansion.category,
        approved=expansion.approved,
        released=expansion.released,
        started=contract.expansion_migration_id(expansion.id) == migration_id,
        from_tier=with_tier is not None and with_tier.from_tier == partner.tier,
    )
    policy = current_policy(session=session)
    now = utcnow()
    evidence = tier_evidence(session=session, partner_id=partner.id, now=now)
    decision = tier_move(
        current=partner.tier,
        target=target,
        trigger=trigger,
        subtype=subtype,
        governed=governed,
        evidence=Decision.merge(
            upgrade_still_eligible(
                evidence,
                now=now,
                policy=policy,
                rising=contract.migration_workflow_id(migration_id),
            ),
            same_new_tier(with_tier.spec if with_tier else None, policy.tier(target)),
        ),
        policy=policy,
    )
    moved = TierChange(
        before=partner.tier,
        target=target,
        applied=decision.allowed,
        reasons=[f"{f.message} ({f.rule})" for f in decision.findings],
    )
    if decision.allowed:
        partner.tier = target
    return moved


def roll_out(*, session: Session, inp: RolloutInput) -> TierChange | None:
    """M-4.5: the rollout takes effect, once per key, in one transaction with its event (and
    the projection): the partner's declared compatibility (E-9.2) and, for a tier migration,
    the tier — judged against the tier in effect now — with the grants that come with it
    (a category-B release's, E-2.7). A retry after the commit answers from the record."""
    audit.lock(session)
    done = audit_data(session=session, key=inp.event.key)
    if done is not None:
        session.rollback()
        tier = done.get("tier_change")
        return TierChange.model_validate(tier) if tier else None
    partner = _locked_partner(session, inp.partner_id)
    moved = None
    data: dict[str, Any] = dict(inp.event.data)
    if inp.tier is not None:
        moved = _tier_change(
            session,
            partner,
            migration_id=inp.event.process_id,
            target=inp.tier,
            trigger=inp.trigger,
            subtype=inp.subtype,
            origin=inp.origin,
            with_tier=inp.with_tier,
        )
        grants, removes = (
            (inp.with_tier.grants, inp.with_tier.removes) if inp.with_tier else ([], [])
        )
        if grants or removes:
            before = holdings(partner)
            if moved.applied:
                after, withheld = _granted(session, partner, before, grants, removes)
                _set_holdings(partner, after)
                data.update(change(before, after).model_dump(mode="json"), removes=removes)
                moved.withheld = [f"{f.field}: {f.message} ({f.rule})" for f in withheld]
            else:
                moved.withheld = [f"{g.name}: the tier did not move" for g in grants]
        session.add(partner)
    declared = _declare(session, inp.partner_id, inp.event, inp.release, inp.declared)
    tier_change = moved.model_dump(mode="json") if moved else None
    data.update(declared=declared, tier_change=tier_change)
    state = {**(inp.event.state or {}), "tier_change": tier_change}
    _record(session, inp.event.model_copy(update={"data": data, "state": state}))
    session.commit()
    return moved


def apply_lifecycle(*, session: Session, inp: LifecycleInput) -> bool:
    """M-4.7: the partner's record takes the migration's target, with its audit event, once. A
    tier in the target (runs rolled out before the tier moved at rollout) is judged like a
    rollout's (E-7.1, E-7.2): a rise not governed by a released category-B expansion, or a move
    against the migration's direction, is not applied and says why in the event."""
    if not _first_time(session, inp.event.key):
        return False
    partner = _locked_partner(session, inp.partner_id)
    data = dict(inp.event.data)
    for field in LIFECYCLE_FIELDS:
        if field not in inp.target or field == "tier":
            continue
        setattr(partner, field, inp.target[field])
    if "tier" in inp.target:
        row = get_process(session=session, workflow_id=inp.event.workflow_id)
        migration = MigrationStatus.model_validate(row.state) if row and row.state else None
        if migration is None:
            raise UnknownPartner(f"no record of {inp.event.workflow_id}")
        moved = _tier_change(
            session,
            partner,
            migration_id=migration.id,
            target=inp.target["tier"],
            trigger=migration.trigger,
            subtype=migration.subtype,
            origin=migration.origin,
            with_tier=None,  # runs rolled out before: their release moved the tier already
        )
        data["tier_change"] = moved.model_dump(mode="json")
    _append_audit(session, inp.event.model_copy(update={"data": data}))
    session.add(partner)
    session.commit()
    return True


def set_partner_status(*, session: Session, inp: PartnerStatusInput) -> bool:
    """Restrict or restore a partner's access (M-9.2, M-9.3), with its audit event, once."""
    if not _append_audit(session, inp.event):
        return False
    partner = session.get(Partner, inp.partner_id)
    if partner is None:
        session.rollback()
        raise UnknownPartner(inp.partner_id)
    partner.status = inp.status.value
    session.add(partner)
    session.commit()
    return True
