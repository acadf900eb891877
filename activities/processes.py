"""Activities that start other governance processes. A started process is linked, not a child:
it outlives whatever started it (a migration runs 12 months after its expansion closed).

Every start is under a business ID (P-1), so a retried activity — or a notice sent twice —
finds the process already started and starts nothing new."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from kwanus import contract
from kwanus.models.deprecation import BatchResult, DeprecationBatch
from kwanus.models.migration import MigrationInput, Noticed
from kwanus.models.remediation import RemediationInput
from kwanus.notice import notice_records
from kwanus.temporal import start
from policy.deprecation import migration_id
from policy.evidence import PartnerState
from policy.migration import check_fallback, fallback_permissions
from store import repo
from store.db import Database

# Starts in flight at once within one fan-out batch: enough to keep the server busy, few
# enough not to swamp it (DESIGN.md: bounded concurrency).
START_CONCURRENCY = 32


class ProcessStarter:
    def __init__(self, client: Client, task_queue: str, db: Database) -> None:
        self.client = client
        self.task_queue = task_queue
        self.db = db

    async def _migration(self, inp: MigrationInput) -> bool:
        """Start `migration-<id>`; False when it was already started."""
        try:
            await start(
                self.client,
                contract.MIGRATION,
                inp,
                process_id=inp.migration_id,
                task_queue=self.task_queue,
                partner_id=inp.partner_id,
                summary=f"Migration {inp.migration_id} · partner {inp.partner_id} · "
                f"{inp.trigger.value}",
            )
        except WorkflowAlreadyStartedError:
            return False
        return True

    @activity.defn(name="start_migration")
    async def start_migration(self, inp: MigrationInput) -> str:
        """Start `migration-<id>` once: a retried activity finds it started (P-1)."""
        if not await self._migration(inp):
            activity.logger.info("migration %s already started", inp.migration_id)
        return contract.migration_workflow_id(inp.migration_id)

    @activity.defn(name="start_remediation")
    async def start_remediation(self, inp: RemediationInput) -> str:
        """Start `remediation-<id>` once (a failed validation's remediation, M-8.2 / M-9)."""
        workflow_id = contract.remediation_workflow_id(inp.remediation_id)
        try:
            await start(
                self.client,
                contract.REMEDIATION,
                inp,
                process_id=inp.remediation_id,
                task_queue=self.task_queue,
                partner_id=inp.partner_id,
                summary=f"Remediation {inp.remediation_id} · partner {inp.partner_id} · "
                f"{inp.severity.value} {inp.kind}",
            )
        except WorkflowAlreadyStartedError:
            activity.logger.info("%s already started", workflow_id)
        return workflow_id

    @activity.defn(name="start_deprecation_batch")
    async def start_deprecation_batch(self, inp: DeprecationBatch) -> BatchResult:
        """One page of partners after `inp.after`: a required migration for each one the notice
        affects (M-2.1), under `migration-<notice>.<partner>` — so a replayed page, a retried
        activity or the same notice sent again starts nothing twice — its notice recorded with
        the page's before it starts (M-4.1, `_notices`), so its run parks at its plan window in
        one workflow task. No backpressure is needed: a run's first task is its last until its
        timer fires, so runs started ahead of the worker wait in its queue, not in its cache."""
        rows = await asyncio.to_thread(self._page, inp.after, inp.limit)
        affected = {p.partner_id for p in rows if inp.notice.affects(p)}
        kind = inp.notice.migration
        months = inp.notice.fallback_months or inp.policy.fallback_default_months
        gate = asyncio.Semaphore(START_CONCURRENCY)

        async def one(migration: MigrationInput) -> bool:
            async with gate:
                started = await self._migration(migration)
                activity.heartbeat(migration.partner_id)
                return started

        inputs = [
            MigrationInput(
                migration_id=migration_id(inp.notice_id, p.partner_id),
                partner_id=p.partner_id,
                trigger=kind.trigger,
                type_=kind.type_,
                subtype=kind.subtype,
                target=inp.notice.target,
                fallback_months=months,
                policy=inp.policy,
                origin=inp.origin,
                requested_by=inp.requested_by,
            )
            for p in rows
        ]
        noticed = await asyncio.to_thread(
            self._notices, inputs, affected, {p.partner_id: list(p.permissions) for p in rows}
        )
        started = await asyncio.gather(*(one(m) for m in noticed))
        return BatchResult(
            scanned=len(rows),
            affected=len(noticed),
            started=sum(started),
            last=rows[-1].partner_id if len(rows) == inp.limit else None,
        )

    def _notices(
        self, inputs: list[MigrationInput], affected: set[str], held: dict[str, list[str]]
    ) -> list[MigrationInput]:
        """M-4.1 for the page, before any of its migrations starts: each one's notice, move to
        Plan and plan window recorded — with their projections and the partner's notification
        — in one transaction (kwanus.notice: the rows a migration started on its own records),
        and each input carrying its notice, so its run starts at its plan window. A retried
        page finds its notices on record and sends what they say (P-4) — every one, whether or
        not the notice still affects its partner (it may have moved off the version since): a
        migration on record always gets its run, which takes it to its end. Of the rest, those
        the notice affects (`affected`) are noticed now. A fallback the rules refuse (M-6.1,
        M-6.3) records nothing here: that migration notices itself, and refuses."""
        at = datetime.now(UTC)
        wids = {m.migration_id: contract.migration_workflow_id(m.migration_id) for m in inputs}
        with self.db.session() as session:
            keys = [f"{wid}:notice" for wid in wids.values()]
            done = repo.audit_records(session=session, keys=keys)
            events, out = [], []
            for m in inputs:
                wid = wids[m.migration_id]
                prior = done.get(f"{wid}:notice")
                if prior is not None:
                    when, data = prior
                    out.append(
                        m.model_copy(
                            update={
                                "noticed": Noticed(
                                    at=when, permissions=list(data["fallback_permissions"])
                                )
                            }
                        )
                    )
                    continue
                if m.partner_id not in affected:
                    continue
                permissions = fallback_permissions(held[m.partner_id])
                if not check_fallback(permissions, held[m.partner_id]).allowed:
                    out.append(m)
                    continue
                events += notice_records(m, wid, at, permissions).events
                out.append(
                    m.model_copy(update={"noticed": Noticed(at=at, permissions=permissions)})
                )
            # Every event's audit row and notifications; one projection a migration, its
            # window's (the last event's stands anyway).
            repo.record_events(session=session, events=events, latest_only=True)
        return out

    def _page(self, after: str | None, limit: int) -> list[PartnerState]:
        with self.db.session() as session:
            rows = repo.list_partners(session=session, after=after, limit=limit)
            manifests = repo.current_manifests(session=session, partners=rows)
            return [repo.partner_state(row, manifests[row.id]) for row in rows]
