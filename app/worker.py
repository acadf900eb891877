"""The Temporal worker: every workflow and activity on one task queue (`kwanus worker`,
`python worker.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TypeVar

from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.governance import GovernanceActivities
from activities.migration import MigrationActivities
from activities.processes import ProcessStarter
from activities.webhooks import Dispatcher, WebhookActivities, webhook_queue
from app import schedules
from kwanus import logs
from kwanus.settings import Settings, get_settings
from kwanus.telemetry import temporal_plugins, tracing, worker_runtime
from kwanus.temporal import connect
from store.db import Database
from workflows.deprecation import DeprecationFanOut
from workflows.expansion import PartnerExpansion
from workflows.migration import PartnerMigration
from workflows.remediation import Remediation
from workflows.stewardship import StewardshipReview
from workflows.webhook import WebhookDelivery

# The sandbox re-imported every workflow module (and what it imports) for each new run: ~30 % of
# the worker's CPU in a fan-out and most of its memory per cached run (bench/RESULTS.md). Our
# modules are deterministic at import (no I/O, no clock at module level; policy/ is pure), so
# they are imported once and shared; the sandbox still guards what workflow code calls.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "workflows", "policy", "kwanus", "activities", "store"
    )
)
GOVERNANCE_WORKFLOWS = [
    PartnerExpansion,
    PartnerMigration,
    Remediation,
    DeprecationFanOut,
    StewardshipReview,
]
# Every workflow type the product runs (the replay corpus replays them all).
WORKFLOWS = [*GOVERNANCE_WORKFLOWS, WebhookDelivery]
# Every worker's (the replay corpus replays with them): the log context of each workflow and
# activity — workflow id, run id, partner (kwanus/logs.py).
INTERCEPTORS = [logs.LogContext()]
# Deliveries in flight at once, on their own queue (async: no thread each).
WEBHOOK_SLOTS = 64
ACTIVITY_THREADS = 16
log = logging.getLogger("kwanus.worker")
T = TypeVar("T")


def build_worker(
    client: Client,
    db: Database,
    *,
    task_queue: str,
    executor: ThreadPoolExecutor,
    max_cached_workflows: int = 10_000,
) -> Worker:
    acts = GovernanceActivities(db)
    migration = MigrationActivities(db)
    starter = ProcessStarter(client, task_queue, db)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=GOVERNANCE_WORKFLOWS,
        activities=[
            acts.record_event,
            acts.assess_risk,
            acts.release_grants,
            acts.apply_grant,
            acts.check_telemetry,
            acts.set_partner_status,
            acts.tier_evidence,
            acts.update_matrix,
            acts.record_deprecation,
            acts.add_tier,
            acts.publish_policy,
            acts.current_policy,
            acts.compile_stewardship,
            starter.start_migration,
            starter.start_remediation,
            starter.start_deprecation_batch,
            migration.notify_partner,
            migration.partner_state,
            migration.notice,
            migration.validate,
            migration.roll_out,
            migration.apply_lifecycle,
        ],
        activity_executor=executor,
        workflow_runner=WORKFLOW_RUNNER,
        interceptors=INTERCEPTORS,
        max_concurrent_activities=ACTIVITY_THREADS,
        max_cached_workflows=max_cached_workflows,
        # SIGTERM lets in-flight activities finish before the process exits.
        graceful_shutdown_timeout=timedelta(seconds=20),
    )


@contextlib.asynccontextmanager
async def dispatching(
    client: Client, db: Database, *, task_queue: str, allow_private: bool
) -> AsyncIterator[None]:
    """Webhooks beside a governance worker, until the block ends: the dispatcher that starts
    each delivery's workflow, and the worker of deliveries on their own task queue
    (`<task queue>-webhooks`) and slots."""
    webhooks = WebhookActivities(db, allow_private=allow_private)
    deliveries = Worker(
        client,
        task_queue=webhook_queue(task_queue),
        workflows=[WebhookDelivery],
        activities=[webhooks.deliver, webhooks.give_up],
        workflow_runner=WORKFLOW_RUNNER,
        interceptors=INTERCEPTORS,
        max_concurrent_activities=WEBHOOK_SLOTS,
        graceful_shutdown_timeout=timedelta(seconds=5),
    )
    stop = asyncio.Event()
    async with deliveries:
        task = asyncio.create_task(Dispatcher(client, db, task_queue=task_queue).run(stop))
        try:
            yield
        finally:
            stop.set()
            await task


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """`work`'s result, or None (and `work` cancelled) if `stop` is set first."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return task.result()


async def run_worker(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Started by a supervisor, maybe before the server: wait for Temporal as long as it takes
    # (each attempt logged) rather than exit and be restarted in a loop; a signal ends the wait.
    # The database is not needed to start: activities open their sessions when they run, and
    # one that fails while the database is down is retried by Temporal.
    try:
        runtime = worker_runtime(settings)
    except ValueError as exc:  # the port is taken
        log.error(
            "worker metrics on %s:%d: %s; choose another port with KWANUS_WORKER_METRICS_PORT "
            "(0: none)",
            settings.metrics_host,
            settings.worker_metrics_port,
            exc,
        )
        raise SystemExit(2) from None
    traced = tracing(settings, "kwanus-worker")
    client = await _unless_stopped(
        connect(
            settings,
            wait=None,
            runtime=runtime,
            plugins=temporal_plugins(traced),
        ),
        stop,
    )
    if client is None:
        log.info("worker stopped while waiting for Temporal at %s", settings.temporal_address)
        return
    try:  # idempotent: one schedule, kept current
        await _unless_stopped(schedules.apply(client, settings.task_queue), stop)
    except RPCError as exc:  # governance goes on; ops see why the yearly review is not scheduled
        log.error("could not apply schedule %s: %s", schedules.SCHEDULE_ID, exc.message)
    if stop.is_set():
        return
    db = Database(settings.database_url)
    with ThreadPoolExecutor(
        max_workers=ACTIVITY_THREADS, thread_name_prefix="kwanus-activity"
    ) as executor:
        worker = build_worker(
            client,
            db,
            task_queue=settings.task_queue,
            executor=executor,
            max_cached_workflows=settings.max_cached_workflows,
        )
        webhooks = dispatching(
            client,
            db,
            task_queue=settings.task_queue,
            allow_private=settings.webhooks_allow_private,
        )
        async with worker, webhooks:
            log.info("worker polling %s on %s", settings.task_queue, settings.temporal_address)
            await stop.wait()
            log.info("worker stopping: finishing in-flight activities")
    db.dispose()
    if traced is not None:
        traced.force_flush()  # the spans still batched are sent (the process ends in os._exit)


def main() -> None:
    logs.configure(get_settings())
    asyncio.run(run_worker(get_settings()))


if __name__ == "__main__":
    main()
