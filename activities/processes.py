"""Activities that start other governance processes. A started process is linked, not a child:
it outlives whatever started it (a migration runs 12 months after its expansion closed)."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from kwanus import contract
from kwanus.models import MigrationInput
from policy.vocabulary import MigrationStage, ProcessKind


class ProcessStarter:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    @activity.defn(name="start_migration")
    async def start_migration(self, inp: MigrationInput) -> str:
        """Start `migration-<id>` once: a retried activity finds it started (P-1)."""
        from workflows.migration import PartnerMigration

        workflow_id = contract.migration_workflow_id(inp.migration_id)
        try:
            await self.client.start_workflow(
                PartnerMigration.run,
                inp,
                id=workflow_id,
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(contract.PARTNER_ID, inp.partner_id),
                        SearchAttributePair(contract.PROCESS, ProcessKind.MIGRATION.value),
                        SearchAttributePair(contract.STAGE, MigrationStage.NOTICE.value),
                    ]
                ),
                static_summary=f"Migration {inp.migration_id} · partner {inp.partner_id} · "
                f"{inp.trigger.value}",
            )
        except WorkflowAlreadyStartedError:
            activity.logger.info("%s already started", workflow_id)
        return workflow_id
