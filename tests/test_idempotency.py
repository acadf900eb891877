"""Retried activities never double a row (P-4; issue 8): every activity that writes, called three
times in sequence and twice at once with the same key, has exactly one effect — on SQLite and on
PostgreSQL. Inserts are detected with the audit chain's key check under its lock, or RETURNING,
never rowcount."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import func, select

from activities.governance import GovernanceActivities
from activities.migration import MigrationActivities
from kwanus.models import (
    CompileInput,
    GrantInput,
    LifecycleInput,
    MatrixInput,
    NewTierInput,
    Notification,
    PartnerStatusInput,
)
from policy.document import DEFAULT_POLICY
from policy.evidence import MatrixEntry
from policy.proposal import NewTier
from policy.vocabulary import PartnerStatus
from store import repo
from store.db import Database
from store.schemas import PartnerCreate
from store.tables import (
    AuditEvent,
    CompatChange,
    NotificationRow,
    PolicyVersion,
    StewardshipReport,
)
from tests.factories import event, partner_body

AT = datetime(2026, 3, 1, tzinfo=UTC)
ENTRY = MatrixEntry(kind="api", name="kwanus", version="9.0", status="supported")


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
        "notify_partner": lambda: mig.notify_partner(
            Notification(
                key="migration-i:notice",
                partner_id="acme",
                process_id="migration-i",
                kind="migration_notice",
                message="m",
                at=AT,
            )
        ),
        "apply_lifecycle": lambda: mig.apply_lifecycle(
            LifecycleInput(
                event=event("migration-i:lifecycle"), partner_id="acme", target={"tier": "premier"}
            )
        ),
    }


def effects(db: Database) -> dict[str, int]:
    with db.session() as session:

        def count(table: Any) -> int:
            return int(session.exec(select(func.count()).select_from(table)).one())

        return {
            "audit rows": count(AuditEvent),
            "matrix changes": count(CompatChange),
            "policy versions": count(PolicyVersion),
            "reports": count(StewardshipReport),
            "notifications": count(NotificationRow),
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
        "notify_partner",
        "apply_lifecycle",
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
