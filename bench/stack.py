"""The product as real processes that can be crashed: a Temporal dev server on a SQLite file, the
worker (`kwanus worker`) and the API (`kwanus api`), each a child process started the way
`kwanus dev` starts it (`app.dev.Stack`, `temporal_command`, `child_env`) on free loopback
ports in a private state folder. Any of them can be SIGKILLed or SIGTERMed and started again —
the server on the same database file and port. Several workers and APIs can run at once on the
one server and database (`workers=`, `apis=`: production's topology); the first of each keeps
the names and log files a single one has (`worker`, `api`), the others are numbered (`worker-2`,
`api-2`, each API on its own port). Shared by the crash tests (tests/test_crash.py) and the soak
(bench/soak.py)."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from temporalio.client import Client
from temporalio.service import RPCError

from app import binaries
from app.dev import Stack, _http_ok, _tcp_open, ensure_admin_token, temporal_command
from kwanus.settings import Settings
from store.db import Database
from store.migrate import upgrade

# The worker logs this once it polls (worker.run_worker).
WORKER_READY = b"worker polling"
# Scripts drive hundreds of steps a minute with a handful of tokens.
RATE_LIMIT = 1_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StackError(Exception):
    """A child process did not come up, or died while it should be running."""


def worker_name(index: int) -> str:
    """The name (and log file) of the `index`-th worker: `worker`, `worker-2`, …"""
    return "worker" if index == 0 else f"worker-{index + 1}"


def api_name(index: int) -> str:
    return "api" if index == 0 else f"api-{index + 1}"


class Processes:
    """One private stack. Start order: `prepare()` (schema, admin token), `start_server()`,
    `start_worker()`, `start_api()`; `stop()` ends what is still running. With `workers=` or
    `apis=` above 1, `start_worker(i)` / `start_api(i)` start each (index 0 is the first)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        database_url: str = "",
        task_queue: str = "kwanus-governance",
        out: Callable[[str], None] = print,
        workers: int = 1,
        apis: int = 1,
        metrics: bool = False,
        otlp_endpoint: str = "",
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        temporal_port = free_port()
        self.settings = Settings(  # every address explicit: no KWANUS_* of the caller leaks in
            state_dir=state_dir,
            database_url=database_url,
            temporal_address=f"127.0.0.1:{temporal_port}",
            temporal_namespace="default",
            task_queue=task_queue,
            api_host="127.0.0.1",
            api_port=free_port(),
            temporal_port=temporal_port,
            ui_port=free_port(),
            temporal_bin="",
            # Off unless asked for; on, each process serves its own (`metrics_ports`).
            api_metrics_port=0,
            worker_metrics_port=0,
            otlp_endpoint=otlp_endpoint,
        )
        self.stack = Stack(
            self.settings,
            out,
            env={
                "KWANUS_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
                "KWANUS_OTLP_ENDPOINT": otlp_endpoint,
            },
        )
        self.metrics_ports: dict[str, int] = (
            {name: free_port() for name in map(worker_name, range(workers))}
            | {name: free_port() for name in map(api_name, range(apis))}
            if metrics
            else {}
        )
        self.binary = binaries.temporal_cli(self.settings.temporal_bin)
        self.server: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes] | None] = [None] * workers
        self.apis: list[subprocess.Popen[bytes] | None] = [None] * apis
        # The first API on the settings' port (KWANUS_API_PORT), the others each on its own.
        self.api_ports = [self.settings.api_port, *(free_port() for _ in range(apis - 1))]
        self.worker_starts = 0
        self.worker_starts_by_index = [0] * workers
        self.server_starts = 0

    @property
    def worker(self) -> subprocess.Popen[bytes] | None:
        """The first worker (the only one, unless `workers=` said more)."""
        return self.workers[0]

    @property
    def api(self) -> subprocess.Popen[bytes] | None:
        return self.apis[0]

    @property
    def api_url(self) -> str:
        return self.api_urls[0]

    @property
    def api_urls(self) -> list[str]:
        return [f"http://{self.settings.api_host}:{port}" for port in self.api_ports]

    @property
    def logs(self) -> Path:
        return self.stack.logs

    def prepare(self) -> str:
        """Migrate the app database and return the admin token (`kwanus dev`'s bootstrap)."""
        upgrade(self.settings.database_url)
        db = Database(self.settings.database_url)
        try:
            token, _ = ensure_admin_token(self.settings, db)
        finally:
            db.dispose()
        return token

    # --- the Temporal dev server -----------------------------------------------------------

    async def start_server(self) -> None:
        """Start (or start again) the dev server on the state folder's database file."""
        cmd = [*temporal_command(self.settings, self.binary), "--headless"]
        self.server = self._spawn("temporal", cmd)
        self.server_starts += 1
        port = self.settings.temporal_port
        await self._until("Temporal dev server", lambda: _tcp_open(port), 60, self.server)

    def kill_server(self) -> None:
        """SIGKILL: no shutdown of any kind, as a crashed host would leave it."""
        self.server = self._kill(self.server, signal.SIGKILL)

    # --- the worker ------------------------------------------------------------------------

    async def start_worker(self, index: int = 0) -> subprocess.Popen[bytes]:
        """Start a worker process (the `index`-th) and return once it polls the task queue."""
        name = worker_name(index)
        log = self.logs / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        proc = self._spawn(name, [sys.executable, "-m", "app.cli", "worker"])
        self.workers[index] = proc
        self.worker_starts += 1
        self.worker_starts_by_index[index] += 1

        def polling() -> bool:
            with log.open("rb") as fh:
                fh.seek(offset)
                return WORKER_READY in fh.read()

        await self._until(name, polling, 60, proc)
        return proc

    def kill_worker(self, index: int = 0) -> int:
        """SIGKILL the worker: in-flight activities and workflow tasks die with it."""
        proc = self.workers[index]
        self.workers[index] = self._kill(proc, signal.SIGKILL)
        assert proc is not None
        return int(proc.returncode)

    async def exited(self, proc: subprocess.Popen[bytes], within: float) -> int | None:
        """The exit code of a child asked to stop, or None if it is still running."""
        give_up = time.monotonic() + within
        while proc.poll() is None and time.monotonic() < give_up:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        return proc.returncode

    def terminate_worker(self, index: int = 0) -> subprocess.Popen[bytes]:
        """SIGTERM the worker (graceful: in-flight activities finish first); the caller waits
        for the returned process to exit."""
        proc = self.workers[index]
        assert proc is not None and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        self.workers[index] = None
        return proc

    # --- the API ---------------------------------------------------------------------------

    async def start_api(self, index: int = 0) -> None:
        """Start the `index`-th API (the first on KWANUS_API_PORT, the others on `--api-port`)
        and return once it answers /healthz."""
        cmd = [sys.executable, "-m", "app.cli", "api"]
        if index:
            cmd += ["--api-port", str(self.api_ports[index])]
        proc = self._spawn(api_name(index), cmd)
        self.apis[index] = proc
        url = f"{self.api_urls[index]}/healthz"
        await self._until(
            "API" if not index else f"API {index + 1}", lambda: _http_ok(url), 60, proc
        )

    def stop_api(self, index: int = 0) -> None:
        """SIGTERM the `index`-th API and wait for it to exit."""
        self.apis[index] = self._kill(self.apis[index], signal.SIGTERM)

    # --- all of it -------------------------------------------------------------------------

    def stop(self) -> None:
        """API, worker, then the server, each asked to stop (the way `kwanus dev` stops)."""
        self.stack.stop()
        self.server = None
        self.workers = [None] * len(self.workers)
        self.apis = [None] * len(self.apis)

    def log_text(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def worker_logs(self) -> str:
        """Every worker's log, one after the other."""
        return "".join(self.log_text(worker_name(i)) for i in range(len(self.workers)))

    # --- helpers ---------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        # From the calling (main) thread: the children's parent-death signal is tied to it.
        env = {}
        if name in self.metrics_ports:
            kind = "WORKER" if name.startswith("worker") else "API"
            env[f"KWANUS_{kind}_METRICS_PORT"] = str(self.metrics_ports[name])
        return self.stack.spawn(name, cmd, log=True, env=env)

    def _kill(
        self, proc: subprocess.Popen[bytes] | None, sig: signal.Signals
    ) -> subprocess.Popen[bytes] | None:
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(sig)
            proc.wait(timeout=30)
            self.forget(proc)
        return None

    def forget(self, proc: subprocess.Popen[bytes]) -> None:
        """Drop an exited child from the stack's list (it is not stopped again)."""
        self.stack.children = [c for c in self.stack.children if c[1] is not proc]

    async def _until(
        self,
        what: str,
        ready: Callable[[], bool],
        within: float,
        proc: subprocess.Popen[bytes],
    ) -> None:
        give_up = time.monotonic() + within
        while not await asyncio.to_thread(ready):
            if proc.poll() is not None:
                raise StackError(f"{what} exited with code {proc.returncode} while starting")
            if time.monotonic() > give_up:
                raise StackError(f"{what} did not become ready within {within:.0f} s")
            await asyncio.sleep(0.1)


async def wait_for_temporal(client: Client, within: float = 60.0) -> None:
    """Until the frontend answers for the client's namespace (after a (re)start)."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    give_up = time.monotonic() + within
    while True:
        try:
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=client.namespace)
            )
            return
        except RPCError:
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.2)
