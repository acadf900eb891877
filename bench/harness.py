"""The bench's running stack and its bookkeeping: the product (dev server, worker, API —
`bench.stack.Processes`) and a bare worker (`bench.baseline`) on its own task queue against the
same server, one Temporal client and one HTTP client, the seeded partners and tokens, and what
the scenarios measured (`rows`, `profiles`, `notes`) for the report."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench import baseline
from bench.drive import Headers
from bench.measure import Profile, Row, cpu_s
from bench.seed import seed
from bench.stack import Processes, wait_for_temporal
from kwanus.models.common import Actor
from policy.document import PolicyDocument
from store.db import Database

BASE_QUEUE = "bench-baseline"
# The observed scenario's lifecycle rounds (a warm-up, then off, on, on, off), each with partners
# of its own.
OBSERVED_ROUNDS = 5


class BenchError(Exception):
    pass


class Harness:
    def __init__(self, args: argparse.Namespace, state_dir: Path) -> None:
        self.args = args
        self.procs = Processes(state_dir, database_url=args.database_url, out=lambda _line: None)
        self.procs.stack.env.update(
            {
                "KWANUS_MAX_CACHED_WORKFLOWS": str(args.max_cached),
                "KWANUS_FANOUT_BATCH_SIZE": str(args.fanout_batch),
            }
        )
        self.rows: list[Row] = []
        self.profiles: list[Profile] = []
        self.notes: list[str] = []
        self.db: Database
        self.client: Client
        self.http: httpx.AsyncClient
        self.headers: dict[str, Headers] = {}
        self.actors: dict[str, Actor] = {}
        self.policy: PolicyDocument
        self.base_proc: Any = None

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    # -- start-up -----------------------------------------------------------------------------

    async def start(self) -> None:
        self.log(f"state in {self.procs.settings.state_dir}")
        self.procs.prepare()
        await self.procs.start_server()
        # The port opens before the frontend is healthy: connecting then fails ("Frontend is
        # not healthy yet"), so the connection is tried again for a while.
        give_up = time.monotonic() + 60
        while True:
            try:
                self.client = await Client.connect(
                    self.procs.settings.temporal_address,
                    namespace=self.procs.settings.temporal_namespace,
                    data_converter=pydantic_data_converter,
                )
                break
            except RuntimeError:
                if time.monotonic() > give_up:
                    raise
                await asyncio.sleep(0.2)
        await wait_for_temporal(self.client)
        await self.start_worker()
        await self.procs.start_api()
        await self.start_baseline_worker()
        self.db = Database(self.procs.settings.database_url)
        self.http = httpx.AsyncClient(
            base_url=self.procs.api_url,
            timeout=httpx.Timeout(120.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        a = self.args
        expansions = a.proposals + a.votes + a.inbox + a.submissions + a.proposals * OBSERVED_ROUNDS
        seeded = seed(self.db, partners=a.partners, expansions=expansions)
        self.headers, self.actors, self.policy = seeded.headers, seeded.actors, seeded.policy
        self.log(
            f"stack up: temporal {self.procs.settings.temporal_address}, api {self.procs.api_url}"
        )

    async def start_worker(self) -> None:
        await self.procs.start_worker()

    async def until_logged(self, log: Path, offset: int, line: bytes, proc: Any) -> None:
        def logged() -> bool:
            if not log.exists():
                return False
            with log.open("rb") as fh:
                fh.seek(offset)
                return line in fh.read()

        give_up = time.monotonic() + 60
        while True:
            if await asyncio.to_thread(logged):
                return
            if proc.poll() is not None or time.monotonic() > give_up:
                raise BenchError(f"{log.stem} did not start (see {log})")
            await asyncio.sleep(0.1)

    async def start_baseline_worker(self) -> None:
        log = self.procs.logs / "baseline.log"
        offset = log.stat().st_size if log.exists() else 0
        self.base_proc = self.procs.stack.spawn(
            "baseline",
            [
                sys.executable,
                "-m",
                "bench.baseline",
                "--address",
                self.procs.settings.temporal_address,
                "--task-queue",
                BASE_QUEUE,
                "--max-cached",
                str(self.args.max_cached),
            ],
            log=True,
        )
        await self.until_logged(log, offset, baseline.READY.encode(), self.base_proc)

    # -- measuring ----------------------------------------------------------------------------

    def cpu_snapshot(self) -> dict[str, float]:
        p = self.procs
        return {
            "server": cpu_s(p.server.pid if p.server else None),
            "worker": cpu_s(p.worker.pid if p.worker else None),
            "api": cpu_s(p.api.pid if p.api else None),
            "bare worker": cpu_s(self.base_proc.pid if self.base_proc else None),
            "bench": time.process_time(),
        }

    async def profiled(
        self, name: str, work: Callable[[], Awaitable[Any]], notes: list[str] | None = None
    ) -> Any:
        before = self.cpu_snapshot()
        t0 = time.monotonic()
        result = await work()
        wall = time.monotonic() - t0
        after = self.cpu_snapshot()
        cpu = {k: after[k] - before[k] for k in before}
        self.profiles.append(Profile(name, wall, cpu, notes if notes is not None else []))
        return result

    async def quiet(self, pid: int | None, *, within: float = 600.0) -> float:
        """Wait until a process has been idle (< 3 % of a core) for two seconds; returns the
        seconds waited."""
        t0 = time.monotonic()
        idle = 0
        last = cpu_s(pid)
        while idle < 2 and time.monotonic() - t0 < within:
            await asyncio.sleep(1.0)
            now = cpu_s(pid)
            idle = idle + 1 if now - last < 0.03 else 0
            last = now
        return time.monotonic() - t0

    async def quiet_worker(self) -> None:
        """Wait until the product worker is idle: between scenarios and their sides."""
        await self.quiet(self.procs.worker.pid if self.procs.worker else None)
