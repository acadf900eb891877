"""The product as real processes that can be crashed: a Temporal dev server on a SQLite file, the
worker (`kwanus worker`) and the API (`kwanus api`), each a child process started the way
`kwanus dev` starts it (`app.dev.Stack`, `temporal_command`, `child_env`) on free loopback
ports in a private state folder. Any of them can be SIGKILLed or SIGTERMed and started again —
the server on the same database file and port. Shared by the crash tests
(tests/test_crash.py) and the soak (bench/soak.py)."""

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


class Processes:
    """One private stack. Start order: `prepare()` (schema, admin token), `start_server()`,
    `start_worker()`, `start_api()`; `stop()` ends what is still running."""

    def __init__(
        self,
        state_dir: Path,
        *,
        database_url: str = "",
        task_queue: str = "kwanus-governance",
        out: Callable[[str], None] = print,
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
        )
        self.stack = Stack(
            self.settings, out, env={"KWANUS_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT)}
        )
        self.binary = binaries.temporal_cli(self.settings.temporal_bin)
        self.server: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.worker_starts = 0
        self.server_starts = 0

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

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

    async def start_worker(self) -> subprocess.Popen[bytes]:
        """Start a worker process and return once it polls the task queue."""
        log = self.logs / "worker.log"
        offset = log.stat().st_size if log.exists() else 0
        proc = self._spawn("worker", [sys.executable, "-m", "app.cli", "worker"])
        self.worker = proc
        self.worker_starts += 1

        def polling() -> bool:
            with log.open("rb") as fh:
                fh.seek(offset)
                return WORKER_READY in fh.read()

        await self._until("worker", polling, 60, proc)
        return proc

    def kill_worker(self) -> int:
        """SIGKILL the worker: in-flight activities and workflow tasks die with it."""
        proc = self.worker
        self.worker = self._kill(proc, signal.SIGKILL)
        assert proc is not None
        return int(proc.returncode)

    async def exited(self, proc: subprocess.Popen[bytes], within: float) -> int | None:
        """The exit code of a child asked to stop, or None if it is still running."""
        give_up = time.monotonic() + within
        while proc.poll() is None and time.monotonic() < give_up:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        return proc.returncode

    def terminate_worker(self) -> subprocess.Popen[bytes]:
        """SIGTERM the worker (graceful: in-flight activities finish first); the caller waits
        for the returned process to exit."""
        proc = self.worker
        assert proc is not None and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        self.worker = None
        return proc

    # --- the API ---------------------------------------------------------------------------

    async def start_api(self) -> None:
        self.api = self._spawn("api", [sys.executable, "-m", "app.cli", "api"])
        url = f"{self.api_url}/healthz"
        await self._until("API", lambda: _http_ok(url), 60, self.api)

    # --- all of it -------------------------------------------------------------------------

    def stop(self) -> None:
        """API, worker, then the server, each asked to stop (the way `kwanus dev` stops)."""
        self.stack.stop()
        self.server = self.worker = self.api = None

    def log_text(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- helpers ---------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        # From the calling (main) thread: the children's parent-death signal is tied to it.
        return self.stack.spawn(name, cmd, log=True)

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
