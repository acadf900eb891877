"""Retried activities never double a row (P-4; issue 8): every activity that writes, called three
times in sequence and twice at once with the same key, has exactly one effect — on SQLite and on
PostgreSQL. Inserts are detected with the audit chain's key check under its lock, or RETURNING,
never rowcount."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import col, func, select

from activities.governance import GovernanceActivities
from activities.migration import MigrationActivities
from kwanus.models.deprecation import NoticedInput
from kwanus.models.expansion import GrantInput, NewTierInput, ReleaseInput
from kwanus.models.migration import (
    Fallback,
    LifecycleInput,
    MatrixInput,
    MigrationStatus,
    NoticeInput,
    Notification,
    RolloutInput,
)
from kwanus.models.remediation import PartnerStatusInput
from kwanus.models.stewardship import CompileInput
from policy.deprecation import DeprecationNotice
from policy.document import DEFAULT_POLICY
from policy.evidence import PlatformRef
from policy.grants import Grant
from policy.migration import check_fallback
from policy.proposal import NewTier
from policy.vocabulary import (
    MigrationStage,
    MigrationType,
    PartnerStatus,
    ProcessKind,
    ProcessStatus,
    Trigger,
    TriggerClass,
)
from store import audit, repo
from store.db import Database
from store.schemas import PartnerCreate
from store.tables import (
    AuditEvent,
    CompatChange,
    NotificationRow,
    Partner,
    PartnerCompat,
    PendingAction,
    PolicyVersion,
    Process,
    StewardshipReport,
)
from testdata.factories import event, partner_body

AT = datetime(2026, 3, 1, tzinfo=UTC)
ENTRY = PlatformRef(kind="api", name="kwanus", version="2.1")


def calls(db: Database) -> dict[str, Callable[[], Any]]:
    gov, mig = GovernanceActivities(db), MigrationActivities(db)
    return {
        "record_event": lambda: gov.record_event(event("expansion-i:submitted")),
        "apply_grant": lambda: gov.apply_grant(
            GrantInput(
                event=event("expansion-i:governance_update"),
                partner_id="acme",
                tier="verified",
                capabilities=["c"],
                permissions=["orders:read"],
                compatibility=[ENTRY],
            )
        ),
        "set_partner_status": lambda: gov.set_partner_status(
            PartnerStatusInput(
                event=event("remediation-i:access"),
                partner_id="acme",
                status=PartnerStatus.RESTRICTED,
            )
        ),
        "update_matrix": lambda: gov.update_matrix(
            MatrixInput(
                event=event("migration-i:matrix:rollout"),
                entries=[ENTRY.model_copy(update={"version": "9.1"})],
            )
        ),
        "add_tier": lambda: gov.add_tier(
            NewTierInput(
                event=event("expansion-i:new_tier"),
                new_tier=NewTier.model_validate(
                    {
                        "spec": {
                            "name": "gold",
                            "capability_kinds": ["read_only"],
                            "integration_kinds": ["api"],
                            "permission_actions": ["read"],
                        },
                        "after": "verified",
                        "compatibility_plan": "c",
                    }
                ),
            )
        ),
        "compile_stewardship": lambda: gov.compile_stewardship(
            CompileInput(
                report_id="2026", workflow_id="stewardship-2026", at=AT, policy=DEFAULT_POLICY
            )
        ),
        "apply_lifecycle": lambda: mig.apply_lifecycle(
            LifecycleInput(
                event=event("migration-i:lifecycle"),
                partner_id="acme",
                target={"os_version": "5.0"},
            )
        ),
        "release_grants": lambda: gov.release_grants(
            ReleaseInput(
                event=event("expansion-i:governance_update"),
                partner_id="acme",
                add=[Grant(type="capability", name="c", kind="read_only", permissions=("o:read",))],
                removes=["orders-dashboard"],
                release="1.0.0",
                declared=[ENTRY],
            )
        ),
        "roll_out": lambda: mig.roll_out(
            RolloutInput(
                event=event(
                    "migration-i:rollout",
                    workflow_id="migration-i",
                    process=ProcessKind.MIGRATION,
                    process_id="i",
                ),
                partner_id="acme",
                release="2.0.0",
                declared=[ENTRY],
                tier="community",
                trigger=Trigger.TIER_DOWNGRADE,
                subtype="downgrade",
            )
        ),
        "record_deprecation": lambda: gov.record_deprecation(
            NoticedInput(
                event=event(
                    "deprecation-i:noticed",
                    workflow_id="deprecation-i",
                    process=ProcessKind.DEPRECATION,
                    process_id="i",
                    partner_id="",
                ),
                notice=DeprecationNotice(kind="api", version="2.1", replacement="3.0"),
            )
        ),
    }


def effects(db: Database) -> dict[str, int]:
    with db.session() as session:

        def count(table: Any) -> int:
            return int(session.exec(select(func.count()).select_from(table)).one())

        partner = session.get(Partner, "acme")
        assert partner is not None
        return {
            "audit rows": count(AuditEvent),
            "matrix changes": count(CompatChange),
            "policy versions": count(PolicyVersion),
            "reports": count(StewardshipReport),
            "notifications": count(NotificationRow),
            "declarations": count(PartnerCompat),
            "partner": (partner.tier, partner.os_version, str(partner.grants)),
        }


@pytest.mark.parametrize(
    "name",
    [
        "record_event",
        "apply_grant",
        "set_partner_status",
        "update_matrix",
        "add_tier",
        "compile_stewardship",
        "apply_lifecycle",
        "release_grants",
        "roll_out",
        "record_deprecation",
    ],
)
def test_each_writing_activity_has_one_effect(db: Database, name: str) -> None:
    with db.session() as session:
        repo.create_partner(session=session, partner=PartnerCreate.model_validate(partner_body()))
    call = calls(db)[name]
    before = effects(db)
    call()
    once = effects(db)
    assert once != before, f"{name} changed nothing"
    for _ in range(2):  # retried in sequence
        call()
    with ThreadPoolExecutor(max_workers=2) as pool:  # and twice at once
        list(pool.map(lambda _: call(), range(2)))
    assert effects(db) == once, name


def notice_input(workflow_id: str = "migration-n") -> NoticeInput:
    """A migration's notice as the patched workflow sends it: the fallback's permissions left
    for the activity to fill in."""
    until = datetime(2027, 3, 1, tzinfo=UTC)
    common: dict[str, Any] = {
        "workflow_id": workflow_id,
        "process": ProcessKind.MIGRATION,
        "process_id": "n",
        "at": AT,
        "awaiting": [],
    }
    return NoticeInput(
        note=Notification(
            key=f"{workflow_id}:notice",
            partner_id="acme",
            process_id=workflow_id,
            kind="migration_notice",
            message="m",
            at=AT,
        ),
        partner_id="acme",
        state=MigrationStatus(
            id="n",
            workflow_id=workflow_id,
            partner_id="acme",
            trigger=Trigger.OS_MAJOR_VERSION,
            trigger_class=TriggerClass.REQUIRED,
            type_=MigrationType.VERSION,
            subtype="os",
            target={"os_version": "5.0"},
            stage=MigrationStage.NOTICE,
            status=ProcessStatus.ACTIVE,
            window_end=AT + timedelta(days=90),
            fallback=Fallback(active=True, until=until),
            policy_version=1,
            started_at=AT,
        ),
        notice=event(
            f"{workflow_id}:notice",
            event="notice",
            actor="TSC",
            stage="Notice",
            rules=["M-4.1", "M-6.1", "M-6.2", "M-6.3"],
            data={"fallback_until": until.isoformat(), "fallback_permissions": [], "origin": None},
            **common,
        ),
        plan=event(
            f"{workflow_id}:stage:Plan",
            event="stage_changed",
            actor="system",
            stage="Plan",
            rules=["M-4.1"],
            **common,
        ),
    )


def test_notice_in_one_activity_writes_each_row_once(db: Database) -> None:
    """M-4.1, M-6.1, P-4: the notice in one activity (patch `notice-in-one-activity`) called three
    times in sequence and twice at once with the same input leaves one notification, one
    `notice` row and one `stage:Plan` row — written in one transaction — and the projection at
    Plan, awaiting nobody, with the read-only fallback."""
    with db.session() as session:
        repo.create_partner(
            session=session,
            partner=PartnerCreate.model_validate(
                partner_body(permissions=["orders:read", "orders:write"])
            ),
        )
    activities, inp = MigrationActivities(db), notice_input()
    results = [activities.notice(inp) for _ in range(3)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results += list(pool.map(lambda _: activities.notice(inp), range(2)))
    assert all(r.permissions == ["orders:read"] and r.refused.allowed for r in results)
    with db.session() as session:
        rows = session.exec(
            select(AuditEvent)
            .where(col(AuditEvent.workflow_id) == "migration-n")
            .order_by(col(AuditEvent.seq))
        ).all()
        notes = session.exec(select(NotificationRow)).all()
        process = session.get(Process, "migration-n")
        inbox = session.exec(select(PendingAction)).all()
        assert audit.verify(session).intact
    assert [(r.key, r.event, r.stage) for r in rows] == [
        ("migration-n:notice", "notice", "Notice"),
        ("migration-n:stage:Plan", "stage_changed", "Plan"),
    ]
    assert rows[0].data == {
        "fallback_until": "2027-03-01T00:00:00+00:00",
        "fallback_permissions": ["orders:read"],  # M-6.1: read-only, never wider (M-6.3)
        "origin": None,
    }
    # P-7: the partner's notice, written with the event that makes it.
    assert [(n.key, n.type, n.receiver) for n in notes] == [
        ("migration-n:notice>partner:acme", "migration.notice", "partner:acme")
    ]
    assert process is not None and (process.stage, process.status) == ("Plan", "active")
    assert process.awaiting == [] and inbox == []
    assert process.state is not None
    assert (process.state["stage"], process.state["step"], process.state["awaiting"]) == (
        "Plan",
        None,
        [],
    )
    assert process.state["fallback"]["permissions"] == ["orders:read"]


def test_notice_retried_after_its_commit_neither_notifies_again_nor_rereads(
    db: Database,
) -> None:
    """M-4.1, M-6.1, P-4, P-7: a retry of the notice after its commit (its answer lost) returns
    the fallback on record — even if the partner's grants changed since — and the partner's
    inbox holds the notice once."""
    with db.session() as session:
        repo.create_partner(
            session=session,
            partner=PartnerCreate.model_validate(
                partner_body(permissions=["orders:read", "orders:write"])
            ),
        )
    activities, inp = MigrationActivities(db), notice_input()
    first = activities.notice(inp)
    with db.session() as session:
        row = session.get(Partner, "acme")
        assert row is not None
        row.registered_permissions = ["orders:read", "orders:write", "invoices:read"]
        session.add(row)
        session.commit()
    again = activities.notice(inp)
    assert first.permissions == again.permissions == ["orders:read"]
    with db.session() as session:
        notes = session.exec(select(NotificationRow)).all()
    assert [(n.type, n.receiver) for n in notes] == [("migration.notice", "partner:acme")]


def test_a_notice_never_carries_an_unbounded_permission_into_the_fallback(db: Database) -> None:
    """M-6.3: a partner holding an unbounded `*:read` (the registry accepts `*`) gets a fallback
    without it — `*:read` reads everything, so it is never a read-only fallback permission — and
    its notice goes on: holding it no longer makes every notice, a forced one's included, fail
    (a way around a forced migration, issue 17's review). A hand-built wider fallback is still
    refused by the policy (check_fallback, tests/test_policy_lifecycle.py)."""
    with db.session() as session:
        body = partner_body(permissions=["*:read", "orders:read"])
        repo.create_partner(session=session, partner=PartnerCreate.model_validate(body))
    result = MigrationActivities(db).notice(notice_input())
    assert result.refused.allowed and result.permissions == ["orders:read"]
    assert not check_fallback(["*:read"], ["*:read", "orders:read"]).allowed
    with db.session() as session:
        rows = session.exec(select(AuditEvent).where(col(AuditEvent.workflow_id) == "migration-n"))
        assert [r.event for r in rows.all()] == ["notice", "stage_changed"]
