"""The store on SQLite, and on PostgreSQL when KWANUS_TEST_DATABASE_URL is set."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from policy.evidence import MatrixEntry
from policy.vocabulary import MatrixStatus, ProcessKind, ProcessStatus
from store import repo
from store.db import Database
from store.migrate import upgrade
from store.schemas import PartnerCreate, TokenCreate
from store.tables import ApiToken, AuditEvent, PendingAction, Process, utcnow
from tests.factories import event, partner_body


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
        rows = session.exec(select(AuditEvent)).all()
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
        keys = session.exec(select(AuditEvent.key)).all()
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
        assert len(session.exec(select(AuditEvent)).all()) == 1


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
    """E-9.1 / E-9.2 never silently: each changed entry gets the next matrix version and names
    its source; an unchanged entry writes nothing; a retried process event applies once."""
    supported = MatrixEntry(kind="api", name="kwanus", version="2.1", status="supported")
    deprecated = supported.model_copy(update={"status": MatrixStatus.DEPRECATED})
    with db.session() as session:
        first = repo.change_matrix(
            session=session, entries=[supported], actor="TSC", reason="2.1 is out"
        )
        assert [c["matrix_version"] for c in first] == [1]
        assert (
            repo.change_matrix(session=session, entries=[supported], actor="TSC", reason="x") == []
        )
        rollout = event(
            "migration-m1:matrix:rollout",
            workflow_id="migration-m1",
            process=ProcessKind.MIGRATION,
            event="matrix_changed",
        )
        for _ in range(3):  # a retried activity
            repo.update_matrix(session=session, event=rollout, entries=[deprecated])
        history = repo.matrix_history(session=session)
        assert [(c.matrix_version, c.status, c.previous, c.source) for c in history] == [
            (2, "deprecated", "supported", "migration-m1"),
            (1, "supported", None, "compatibility-matrix"),
        ]
        assert repo.compatibility_matrix(session=session).version == 2
        audit = session.exec(
            select(AuditEvent).where(AuditEvent.key == "migration-m1:matrix:rollout")
        ).one()
        assert audit.data["changes"][0]["previous"] == "supported"
        tsc = session.exec(
            select(AuditEvent).where(AuditEvent.key == "compatibility-matrix:v1")
        ).one()
        assert tsc.actor == "TSC" and tsc.data["reason"] == "2.1 is out"
