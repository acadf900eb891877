"""The product's own processes as tests run them: `kwanus api` and `kwanus worker`, each a
process of its own on free loopback ports, against a test's database and dev server, with
everything it prints kept in a file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from tests.apistack import eventually

KWANUS = str(Path(sys.executable).parent / "kwanus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def product_env(
    env: WorkflowEnvironment, database_url: str, state: Path, **settings: str
) -> dict[str, str]:
    """The environment of a `kwanus api` or `kwanus worker` on `env`'s server and the test's
    database, on a task queue of its own, with JSON logs, no metrics endpoint (each would take
    a fixed port) and `settings` (`KWANUS_…`, `OTEL_…`) on top; nothing of this machine's
    KWANUS_ or OTEL_ settings leaks in."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KWANUS_", "OTEL_"))}
    return {
        **base,
        "KWANUS_STATE_DIR": str(state),
        "KWANUS_DATABASE_URL": database_url,
        "KWANUS_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "KWANUS_TASK_QUEUE": f"kwanus-test-{uuid.uuid4().hex[:10]}",
        "KWANUS_API_METRICS_PORT": "0",
        "KWANUS_WORKER_METRICS_PORT": "0",
        "KWANUS_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        **settings,
    }


class Process:
    """`kwanus <command>` in a process of its own, everything it prints kept in a file."""

    def __init__(self, command: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [KWANUS, command],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> None:
        assert self.proc.poll() is None, self.text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def api_up(http: httpx.AsyncClient, *running: Process) -> None:
    """Once the API behind `http` answers `/healthz`; every process of `running` must stay
    up meanwhile."""

    async def up() -> bool:
        for process in running:
            process.alive()
        try:
            return (await http.get("/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    assert await eventually(up, within=30), "\n".join(p.text() for p in running)


async def polling(worker: Process) -> None:
    """Once the worker polls its task queue."""

    async def logged() -> bool:
        worker.alive()
        return "worker polling" in worker.text()

    assert await eventually(logged, within=30), worker.text()


@asynccontextmanager
async def kwanus_worker(env: dict[str, str], log: Path) -> AsyncIterator[Process]:
    """`kwanus worker`, polling, until the block ends (then SIGTERM)."""
    worker = Process("worker", env, log)
    try:
        await polling(worker)
        yield worker
    finally:
        worker.stop()


@asynccontextmanager
async def kwanus_api(env: dict[str, str], log: Path) -> AsyncIterator[httpx.AsyncClient]:
    """`kwanus api` on a free port, answering, and a client of it, until the block ends."""
    port = free_port()
    api = Process("api", {**env, "KWANUS_API_PORT": str(port)}, log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            await api_up(http, api)
            yield http
    finally:
        api.stop()
