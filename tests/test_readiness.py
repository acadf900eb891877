"""Start-up and readiness against real dependencies that go down and come back: a TCP proxy
(tests/tcpproxy.py) in front of the Temporal dev server and of PostgreSQL is cut and restored
while the API and the worker run — no mock of either. `/readyz` answers 503 naming what is
down, within its bounded time, and 200 again by itself; the API starts while Temporal is
unreachable; the worker waits for Temporal instead of exiting, polls once it is up, and a
SIGTERM stops it while it waits."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.routes.health import CHECK_TIMEOUT
from kwanus.settings import Settings
from tests.conftest import PG_URL
from tests.tcpproxy import tcp_proxy

# A probe must answer within its checks' bound, with room for a slow machine.
PROBE_BOUND = CHECK_TIMEOUT + 1.5


def temporal_target(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


@asynccontextmanager
async def api_http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app as `kwanus api` runs it: its own lazy Temporal client (temporal=None)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kwanus") as http:
            yield http


async def readyz(http: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await http.get("/readyz")
    assert loop.time() - started < PROBE_BOUND, "a readiness probe must not hang"
    return resp.status_code, resp.json()["checks"]


async def until_ready(http: httpx.AsyncClient, want: int, within: float = 10.0) -> dict[str, str]:
    """Probe until /readyz answers `want`, as a load balancer would; the last checks."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within
    while True:
        status, checks = await readyz(http)
        if status == want:
            return checks
        assert loop.time() < give_up, f"/readyz still {status}: {checks}"
        await asyncio.sleep(0.1)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kwanus.db'}"


async def test_readyz_follows_temporal_down_and_back(
    dev_env: WorkflowEnvironment, sqlite_url: str
) -> None:
    """Temporal goes away under a running API: 503 naming temporal, then 200 once it is back —
    the same app, no restart."""
    async with tcp_proxy(temporal_target(dev_env)) as proxy:
        settings = Settings(database_url=sqlite_url, temporal_address=proxy.address)
        async with api_http(settings) as http:
            assert await readyz(http) == (200, {"database": "ok", "temporal": "ok"})
            await proxy.cut()
            checks = await until_ready(http, 503)
            assert checks["database"] == "ok"
            assert checks["temporal"].startswith("down")
            await proxy.restore()
            assert await until_ready(http, 200) == {"database": "ok", "temporal": "ok"}


async def test_readyz_follows_database_down_and_back(dev_env: WorkflowEnvironment) -> None:
    """PostgreSQL goes away under a running API (its pooled connections dropped): 503 naming
    the database, then 200 once it is back — the pool replaces its dead connections."""
    if not PG_URL:
        pytest.skip("needs KWANUS_TEST_DATABASE_URL: a SQLite file cannot go down")
    pg = make_url(PG_URL)
    async with tcp_proxy(f"{pg.host or '127.0.0.1'}:{pg.port or 5432}") as proxy:
        url = pg.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        settings = Settings(database_url=url, temporal_address=temporal_target(dev_env))
        async with api_http(settings) as http:
            assert await readyz(http) == (200, {"database": "ok", "temporal": "ok"})
            await proxy.cut()
            checks = await until_ready(http, 503)
            assert checks["database"].startswith("down")
            assert checks["temporal"] == "ok"
            await proxy.restore()
            assert await until_ready(http, 200) == {"database": "ok", "temporal": "ok"}


async def test_api_starts_before_temporal(dev_env: WorkflowEnvironment, sqlite_url: str) -> None:
    """The API starts while Temporal is unreachable (answers, not ready) and becomes ready by
    itself when Temporal comes up."""
    async with tcp_proxy(temporal_target(dev_env), up=False) as proxy:
        settings = Settings(database_url=sqlite_url, temporal_address=proxy.address)
        async with api_http(settings) as http:
            assert (await http.get("/healthz")).status_code == 200
            status, checks = await readyz(http)
            assert status == 503
            assert checks["temporal"].startswith("down")
            assert checks["database"] == "ok"
            await proxy.restore()
            assert await until_ready(http, 200) == {"database": "ok", "temporal": "ok"}


async def test_api_starts_before_the_database(dev_env: WorkflowEnvironment) -> None:
    """The API starts while PostgreSQL is unreachable and becomes ready when it comes up."""
    if not PG_URL:
        pytest.skip("needs KWANUS_TEST_DATABASE_URL: a SQLite file cannot be unreachable")
    pg = make_url(PG_URL)
    async with tcp_proxy(f"{pg.host or '127.0.0.1'}:{pg.port or 5432}", up=False) as proxy:
        url = pg.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        settings = Settings(database_url=url, temporal_address=temporal_target(dev_env))
        async with api_http(settings) as http:
            status, checks = await readyz(http)
            assert status == 503
            assert checks["database"].startswith("down")
            assert checks["temporal"] == "ok"
            await proxy.restore()
            assert await until_ready(http, 200) == {"database": "ok", "temporal": "ok"}


async def test_readyz_answers_while_dependencies_hang(
    dev_env: WorkflowEnvironment, sqlite_url: str
) -> None:
    """A dependency that accepts connections but never answers (a hung server, a black-holed
    route) makes /readyz say so within its bound instead of hanging the probe — Temporal, and
    PostgreSQL too when KWANUS_TEST_DATABASE_URL is set — and it recovers when they answer."""
    pg = make_url(PG_URL) if PG_URL else None
    pg_target = f"{pg.host or '127.0.0.1'}:{pg.port or 5432}" if pg else "127.0.0.1:1"
    async with tcp_proxy(temporal_target(dev_env)) as temporal, tcp_proxy(pg_target) as database:
        url = (
            pg.set(host="127.0.0.1", port=database.port).render_as_string(hide_password=False)
            if pg
            else sqlite_url
        )
        settings = Settings(database_url=url, temporal_address=temporal.address)
        async with api_http(settings) as http:
            assert await readyz(http) == (200, {"database": "ok", "temporal": "ok"})
            await temporal.stall()
            await database.stall()
            status, checks = await readyz(http)  # within PROBE_BOUND
            assert status == 503
            assert checks["temporal"].startswith("down")
            assert checks["database"].startswith("down") if pg else checks["database"] == "ok"
            await temporal.restore()
            await database.restore()
            assert await until_ready(http, 200) == {"database": "ok", "temporal": "ok"}


class WorkerProcess:
    """`kwanus worker` as a supervisor runs it, its log read as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def logged(self, text: str, times: int = 1, within: float = 15.0) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + within
        while self.count(text) < times:
            assert self.proc.returncode is None, "worker exited:\n" + "\n".join(self.lines)
            assert loop.time() < give_up, f"never logged {text!r}:\n" + "\n".join(self.lines)
            await asyncio.sleep(0.05)

    async def stopped(self, within: float) -> int:
        code = await asyncio.wait_for(self.proc.wait(), within)
        await self._reader
        return code

    def log(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
async def start_worker(tmp_path: Path) -> AsyncIterator[Any]:
    started: list[WorkerProcess] = []

    async def start(temporal_address: str, task_queue: str) -> WorkerProcess:
        env = {
            **os.environ,
            "KWANUS_STATE_DIR": str(tmp_path),
            "KWANUS_DATABASE_URL": f"sqlite:///{tmp_path / 'kwanus.db'}",
            "KWANUS_TEMPORAL_ADDRESS": temporal_address,
            "KWANUS_TASK_QUEUE": task_queue,
            "KWANUS_WORKER_METRICS_PORT": "0",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", "worker", env=env, stderr=asyncio.subprocess.PIPE
        )
        started.append(WorkerProcess(proc))
        return started[-1]

    yield start
    for worker in started:
        if worker.proc.returncode is None:
            worker.proc.kill()
            await worker.proc.wait()


async def pollers(env: WorkflowEnvironment, task_queue: str) -> list[str]:
    resp = await env.client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=env.client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return [p.identity for p in resp.pollers]


async def test_worker_waits_for_temporal_then_polls(
    dev_env: WorkflowEnvironment, start_worker: Any
) -> None:
    """Started while Temporal is unreachable, the worker keeps retrying (each attempt logged)
    instead of exiting; once Temporal is up it polls its task queue; SIGTERM ends it cleanly."""
    task_queue = f"kwanus-test-{uuid.uuid4().hex[:10]}"
    async with tcp_proxy(temporal_target(dev_env), up=False) as proxy:
        worker = await start_worker(proxy.address, task_queue)
        await worker.logged("not reachable (attempt 3", within=30)
        await proxy.restore()
        await worker.logged("worker polling")
        identity = f"{worker.proc.pid}@"

        async def polled() -> bool:
            return any(p.startswith(identity) for p in await pollers(dev_env, task_queue))

        loop = asyncio.get_running_loop()
        give_up = loop.time() + 10
        while not await polled():
            assert loop.time() < give_up, "no poller on the task queue:\n" + worker.log()
            await asyncio.sleep(0.1)
        worker.proc.send_signal(signal.SIGTERM)
        assert await worker.stopped(within=25) == 0, worker.log()
        assert worker.count("worker stopping") == 1


async def test_worker_stops_on_sigterm_while_waiting(
    dev_env: WorkflowEnvironment, start_worker: Any
) -> None:
    """A worker still waiting for Temporal stops at once on SIGTERM, with exit code 0."""
    async with tcp_proxy(temporal_target(dev_env), up=False) as proxy:
        worker = await start_worker(proxy.address, f"kwanus-test-{uuid.uuid4().hex[:10]}")
        await worker.logged("not reachable (attempt 1", within=30)
        worker.proc.send_signal(signal.SIGTERM)
        assert await worker.stopped(within=5) == 0, worker.log()
        assert worker.count("stopped while waiting for Temporal") == 1
