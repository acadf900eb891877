"""Tamper-evident audit log: a hash chain over every row (`kwanus audit verify` names the first
break), appends that never fork under concurrency, an existing log chained by the migration,
and — on PostgreSQL — UPDATE and DELETE refused by a trigger."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from app.cli import main
from store import audit, repo
from store.db import Database
from store.migrate import upgrade
from testdata.factories import event

# `kwanus db upgrade` seeds the shipped platform rows with one audit event: row 1 of a new log.
SEEDED = 1


def log(db: Database, n: int, prefix: str = "expansion-x") -> None:
    for i in range(n):
        with db.session() as session:
            repo.record_event(session=session, event=event(f"{prefix}:step{i}", event=f"e{i}"))


def test_chain_verifies_and_names_the_first_break(db: Database) -> None:
    log(db, 5)
    with db.session() as session:
        assert audit.verify(session).intact and audit.verify(session).rows == SEEDED + 5
    if db.engine.dialect.name != "sqlite":
        pytest.skip("raw tampering is refused on PostgreSQL (next test)")
    with db.engine.begin() as conn:  # someone edits row 3 behind the application's back
        conn.execute(sa.text("UPDATE audit_event SET actor = 'mallory' WHERE seq = 3"))
    with db.session() as session:
        verdict = audit.verify(session)
    assert not verdict.intact and verdict.first_break is not None
    assert verdict.first_break.startswith("row 3 ") and "changed" in verdict.first_break


def test_a_deleted_row_breaks_the_chain(db: Database) -> None:
    if db.engine.dialect.name != "sqlite":
        pytest.skip("DELETE is refused on PostgreSQL (next test)")
    log(db, 4)
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_event WHERE seq = 2"))
    with db.session() as session:
        verdict = audit.verify(session)
    assert verdict.first_break is not None and "row 3" in verdict.first_break
    assert "missing" in verdict.first_break


def test_postgres_refuses_update_and_delete(db: Database) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL's")
    log(db, 2)
    for statement in (
        "UPDATE audit_event SET actor = 'mallory' WHERE seq = 1",
        "DELETE FROM audit_event WHERE seq = 1",
    ):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(sa.text(statement))
    with db.session() as session:
        assert audit.verify(session).intact


def test_concurrent_appends_never_fork(db: Database) -> None:
    """Eight writers at once, each event also retried: one row per key, one unbroken chain."""

    def write(i: int) -> None:
        for _ in range(2):
            with db.session() as session:
                repo.record_event(session=session, event=event(f"expansion-c:{i}"))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(40)))
    with db.session() as session:
        verdict = audit.verify(session)
    assert verdict.intact and verdict.rows == SEEDED + 40


def test_migration_chains_an_existing_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0007")  # a log written before the chain existed
    database = Database(url)
    try:
        with database.engine.begin() as conn:
            for i in range(3):
                conn.execute(
                    sa.text(
                        "INSERT INTO audit_event (key, at, recorded_at, workflow_id, process, "
                        "process_id, partner_id, event, actor, stage, rules, data) VALUES "
                        "(:key, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 'expansion-o', "
                        "'expansion', 'o', 'acme', 'e', 'system', 'Proposal', '[]', '{}')"
                    ),
                    {"key": f"expansion-o:{i}"},
                )
        upgrade(url)
        log(database, 2, prefix="expansion-n")  # and new rows chain on
        with database.session() as session:
            verdict = audit.verify(session)
        assert verdict.intact and verdict.rows == 3 + SEEDED + 2
    finally:
        database.dispose()


def test_audit_verify_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    monkeypatch.setenv("KWANUS_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    database = Database(url)
    try:
        log(database, 3)
        assert main(["audit", "verify"]) == 0
        assert f"{SEEDED + 3} rows" in capsys.readouterr().out
        with database.engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_event SET data = '{\"x\": 1}' WHERE seq = 2"))
        assert main(["audit", "verify"]) == 1
        assert "row 2 " in capsys.readouterr().err
    finally:
        database.dispose()
