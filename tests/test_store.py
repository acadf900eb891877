"""The store on SQLite, and on PostgreSQL when KWANUS_TEST_DATABASE_URL is set."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from policy.evidence import MatrixEntry, PlatformRef
from policy.vocabulary import MatrixStatus, ProcessKind, ProcessStatus
from store import repo
from store.db import Database
from store.migrate import shipped_matrix, upgrade
from store.repo import PLATFORM_SEED
from store.schemas import PartnerCreate, TokenCreate
from store.tables import ApiToken, AuditEvent, PendingAction, Process, utcnow
from testdata.factories import event, partner_body
from tests.conftest import BACKENDS, pg_schema


def test_migrations_create_every_table_and_rerun_cleanly(db_url: str) -> None:
    upgrade(db_url)  # a second upgrade is a no-op
    database = Database(db_url)
    try:
        names = set(sa.inspect(database.engine).get_table_names())
    finally:
        database.dispose()
    assert {"partner", "api_token", "process", "audit_event", "alembic_version"} <= names


def test_migrations_match_the_tables(db_url: str) -> None:
    """Every table and index the code declares is created by a migration (nothing to
    autogenerate), on SQLite and PostgreSQL."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import store.tables  # noqa: F401  (registers the tables)

    database = Database(db_url)
    try:
        with database.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    finally:
        database.dispose()
    assert diff == []


def test_record_event_retried_in_sequence_writes_once(db: Database) -> None:
    """P-4: a retried activity writes its audit row once, and the projection once."""
    results = []
    for _ in range(3):
        with db.session() as session:
            results.append(repo.record_event(session=session, event=event()))
    assert results == [True, False, False]
    with db.session() as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.workflow_id == "expansion-x")).all()
        assert [r.key for r in rows] == ["expansion-x:submitted"]
        process = repo.get_process(session=session, workflow_id="expansion-x")
        assert process is not None and process.stage == "Proposal"


def test_an_older_event_landing_late_keeps_the_later_state(db: Database) -> None:
    """P-4: events of one run that commit out of order (a decline recorded while the run's own
    `notice` write is in flight) are both in the log, and the projection and the inbox show
    the later one in workflow time."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    declined = event(
        "expansion-x:finished:declined",
        at=t0 + timedelta(seconds=1),
        event="declined",
        status=ProcessStatus.WITHDRAWN,
        awaiting=[],
    )
    earlier = event(
        "expansion-x:stage:Evaluation", at=t0, event="stage_changed", stage="Evaluation"
    )
    with db.session() as session:
        assert repo.record_event(session=session, event=declined)
        assert repo.record_event(session=session, event=earlier)
    with db.session() as session:
        row = session.get(Process, "expansion-x")
        assert row is not None
        assert (row.status, row.stage) == (ProcessStatus.WITHDRAWN.value, "Proposal")
        assert session.exec(select(PendingAction)).all() == []
        keys = session.exec(
            select(AuditEvent.key).where(AuditEvent.workflow_id == "expansion-x")
        ).all()
        assert sorted(keys) == ["expansion-x:finished:declined", "expansion-x:stage:Evaluation"]
        later = declined.model_copy(
            update={"key": "expansion-x:reported", "at": t0 + timedelta(seconds=2), "stage": "Done"}
        )
        assert repo.record_event(session=session, event=later)  # a later one still applies
        same_instant = event(  # a review accepted with the withdrawal, landing after it
            "expansion-x:review:TSC", at=later.at, event="reviewed", stage="Evaluation"
        )
        assert repo.record_event(session=session, event=same_instant)
    with db.session() as session:
        row = session.get(Process, "expansion-x")
        assert row is not None and (row.stage, row.status) == ("Done", "withdrawn")
        assert session.exec(select(PendingAction)).all() == []


def test_record_event_concurrent_duplicates_write_once(db: Database) -> None:
    """P-4: two attempts racing with the same key leave exactly one row."""

    def attempt(_: int) -> bool:
        with db.session() as session:
            return repo.record_event(session=session, event=event())

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(attempt, range(2)))
    assert sorted(outcomes) == [False, True]
    with db.session() as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.workflow_id == "expansion-x"))
        assert len(rows.all()) == 1


def test_projection_follows_events_and_keeps_timezone(db: Database) -> None:
    deadline = datetime(2026, 1, 15, tzinfo=UTC)
    with db.session() as session:
        repo.record_event(session=session, event=event())
        repo.record_event(
            session=session,
            event=event(
                "expansion-x:stage:Evaluation",
                stage="Evaluation",
                event="stage_changed",
                at=datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
                next_deadline=deadline,
                state={"stage": "Evaluation"},
            ),
        )
    with db.session() as session:
        row = session.get(Process, "expansion-x")
        assert row is not None
        assert row.stage == "Evaluation"
        assert repo.as_utc(row.next_deadline) == deadline
        assert row.state == {"stage": "Evaluation"}
        listed = repo.list_processes(session=session, kind="expansion", stage="Evaluation")
        assert [p.workflow_id for p in listed] == ["expansion-x"]
        assert repo.list_processes(session=session, kind="expansion", partner_id="other") == []


def test_partner_registered_once(db: Database) -> None:
    body = PartnerCreate.model_validate(partner_body())
    with db.session() as session:
        repo.create_partner(session=session, partner=body)
    with db.session() as session, pytest.raises(repo.AlreadyExists):
        repo.create_partner(session=session, partner=body)


def test_tokens_are_stored_hashed_and_checked(db: Database) -> None:
    """P-6: only a hash is stored; a wrong secret, a revoked or an expired token is refused."""
    with db.session() as session:
        repo.create_partner(session=session, partner=PartnerCreate.model_validate(partner_body()))
        created = repo.create_token(
            session=session, token=TokenCreate(role="partner", partner_id="acme")
        )
    secret = created.token.split(".")[2]
    now = utcnow()
    with db.session() as session:
        row = session.get(ApiToken, created.id)
        assert row is not None and secret not in row.secret_sha256
        found = repo.authenticate(session=session, raw=created.token, now=now)
        assert found is not None and found.partner_id == "acme"
        assert repo.authenticate(session=session, raw=created.token + "x", now=now) is None
        assert repo.authenticate(session=session, raw="not-a-token", now=now) is None
        row.revoked_at = now
        session.add(row)
        session.commit()
        assert repo.authenticate(session=session, raw=created.token, now=now) is None

    with db.session() as session:
        expiring = repo.create_token(
            session=session, token=TokenCreate(role="ops", expires_at=now + timedelta(hours=1))
        )
        assert repo.authenticate(session=session, raw=expiring.token, now=now) is not None
        later = now + timedelta(hours=2)
        assert repo.authenticate(session=session, raw=expiring.token, now=later) is None


def test_partner_token_needs_a_registered_partner(db: Database) -> None:
    with db.session() as session, pytest.raises(repo.UnknownPartner):
        repo.create_token(session=session, token=TokenCreate(role="partner", partner_id="ghost"))


def test_policy_versions_stored_in_order(db: Database) -> None:
    """P-5: every version is kept; the highest is in force."""
    from policy.document import DEFAULT_POLICY, PolicyContent

    with db.session() as session:
        assert repo.current_policy(session=session) == DEFAULT_POLICY
        content = PolicyContent.model_validate(
            {**DEFAULT_POLICY.model_dump(exclude={"version"}), "fallback_default_months": 15}
        )
        saved = repo.save_policy(session=session, content=content, actor="CGB")
        assert saved.version == 2
    with db.session() as session:
        now_in_force = repo.current_policy(session=session)
    assert now_in_force.version == 2 and now_in_force.fallback_default_months == 15
    assert now_in_force.tiers == DEFAULT_POLICY.tiers


def test_matrix_changes_are_numbered_and_audited(db: Database) -> None:
    """E-9.1 / E-9.2 never silently: the shipped platform rows are numbered first (source
    `platform-seed`); each entry TSC changes gets the next matrix version and names its source;
    an unchanged entry writes nothing; seeding again changes nothing; a rollout event from a run
    recorded before E-9.2's decision, retried, is the partner's own declaration — the platform's
    rows stay as they are."""
    shipped = shipped_matrix()
    supported = MatrixEntry(kind="api", name="kwanus", version="2.1", status="supported")
    assert supported in shipped
    deprecated = supported.model_copy(update={"status": MatrixStatus.DEPRECATED})
    seeded = len(shipped)
    with db.session() as session:
        repo.create_partner(session=session, partner=PartnerCreate(**partner_body("acme")))
        assert [c.source for c in repo.matrix_history(session=session)] == [PLATFORM_SEED] * seeded
        first = repo.change_matrix(
            session=session, entries=[deprecated], actor="TSC", reason="2.1 is going"
        )
        assert [c["matrix_version"] for c in first] == [seeded + 1]
        assert (
            repo.change_matrix(session=session, entries=[deprecated], actor="TSC", reason="x") == []
        )
        assert repo.seed_platform_matrix(session=session, entries=shipped) == []
        rollout = event(
            "migration-m1:matrix:rollout",
            workflow_id="migration-m1",
            process=ProcessKind.MIGRATION,
            event="matrix_changed",
        )
        legacy = PlatformRef(kind="api", name="kwanus", version="2.1")
        for _ in range(3):  # a retried activity
            repo.update_matrix(session=session, event=rollout, entries=[legacy])
        history = repo.matrix_history(session=session)
        assert [(c.matrix_version, c.status, c.previous, c.source) for c in history[:1]] == [
            (seeded + 1, "deprecated", "supported", "compatibility-matrix"),
        ]
        matrix = repo.compatibility_matrix(session=session)
        assert matrix.version == seeded + 1
        assert matrix.status_of(supported.kind, "kwanus", "2.1") is MatrixStatus.DEPRECATED
        declared = repo.partner_compatibility(session=session, partner_id="acme")
        assert [(d.kind, d.version, d.source) for d in declared] == [("api", "2.1", "migration-m1")]
        tsc = session.exec(
            select(AuditEvent).where(AuditEvent.key == f"compatibility-matrix:v{seeded + 1}")
        ).one()
        assert tsc.actor == "TSC" and tsc.data["reason"] == "2.1 is going"


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema yet: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    with pg_schema() as url:
        yield url


def test_partners_registered_before_keep_their_grants_and_old_reports_are_not_evidence(
    empty_url: str,
) -> None:
    """E-2.7 / E-7.1, migration 0010 on both databases: a partner registered before grants had
    kinds keeps its capability names (kind `unknown`, no permissions) and its permissions (as
    registered ones); a telemetry report stored before reporters were recorded has none — it
    counts as self-reported and is never evidence."""
    upgrade(empty_url, "0009")
    db = Database(empty_url)
    try:
        end = datetime.now(UTC) - timedelta(days=1)
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO partner (id, name, tier, status, os_version, api_version, "
                    "runtime_name, runtime_version, capabilities, permissions, created_at) VALUES "
                    "('acme', 'Acme', 'verified', 'active', '4.2', '2.1', 'kwanus-runtime', "
                    "'3.0', :caps, :perms, :at)"
                ),
                {
                    "caps": '["orders-dashboard", "legacy-export"]',
                    "perms": '["orders:read", "legacy:read"]',
                    "at": end,
                },
            )
            conn.execute(
                sa.text(
                    "INSERT INTO telemetry_report (partner_id, period_start, period_end, "
                    "workflow_success_rate, api_error_rate, permission_usage, deprecated_calls, "
                    "recorded_at) VALUES ('acme', :start, :end, 1.0, 0.0, '{}', 0, :end)"
                ),
                {"start": end - timedelta(days=7), "end": end},
            )
        upgrade(empty_url)
        with db.session() as session:
            row = repo.get_partner(session=session, partner_id="acme")
            assert row is not None
            held = repo.holdings(row)
            assert [(g.name, g.kind, g.permissions) for g in held.grants] == [
                ("orders-dashboard", "unknown", ()),
                ("legacy-export", "unknown", ()),
            ]
            assert held.permissions == ("legacy:read", "orders:read")
            assert repo.partner_public(row).capabilities == ["legacy-export", "orders-dashboard"]
            evidence = repo.tier_evidence(session=session, partner_id="acme", now=datetime.now(UTC))
            assert evidence.telemetry == ()  # self-reported: never evidence
            assert evidence.granted_permissions == ("legacy:read", "orders:read")
    finally:
        db.dispose()
