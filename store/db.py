"""Engine and sessions for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

# A failed statement's error names its SQL, never its parameters (a webhook secret as it is
# inserted): such errors reach the logs, and an activity's reach its workflow's history.
HIDE_PARAMETERS = True


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=HIDE_PARAMETERS,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the API read while the worker writes; busy_timeout makes writers queue
            # instead of failing with "database is locked".
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # pre-ping: a connection PostgreSQL dropped (restart, failover) is replaced on checkout, so
    # the process recovers by itself. connect_timeout: a server that does not answer fails a
    # connect in seconds instead of the OS's minutes (unless the URL sets its own).
    libpq = parsed.get_driver_name() in ("psycopg", "psycopg2")
    connect_args = {"connect_timeout": 5} if libpq and "connect_timeout" not in parsed.query else {}
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args=connect_args,
        hide_parameters=HIDE_PARAMETERS,
    )


class Database:
    """One engine per process; sessions are short and per unit of work."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
