"""The replay corpus: histories of real runs (tests/histories/, exported from the workflow tests
with KWANUS_EXPORT_HISTORIES=1 — README, "Changing workflow code") replayed against today's
workflow code. A change that would make a running process non-deterministic fails here, before
it is deployed; the negative control shows an unpatched change is caught."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

import worker
from kwanus.models.migration import MigrationInput, MigrationStatus
from workflows.migration import PartnerMigration

CORPUS = sorted((Path(__file__).parent / "histories").glob("*.json.gz"))


def load(path: Path) -> WorkflowHistory:
    workflow_id = path.name.removesuffix(".json.gz").split("__", 1)[1]
    return WorkflowHistory.from_json(workflow_id, gzip.decompress(path.read_bytes()).decode())


# The corpus replays in shards, so that the test command's workers share it (one shard is a
# fraction of the whole; together they are every history, checked by the first assertion).
SHARDS = 4


@pytest.mark.parametrize("shard", range(SHARDS))
async def test_every_history_replays(shard: int) -> None:
    assert len(CORPUS) >= 20, "the replay corpus is missing (tests/histories/)"
    assert sum(len(CORPUS[i::SHARDS]) for i in range(SHARDS)) == len(CORPUS)
    replayer = Replayer(
        workflows=worker.WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=worker.WORKFLOW_RUNNER,
        interceptors=worker.INTERCEPTORS,
    )

    async def histories() -> AsyncIterator[WorkflowHistory]:
        for path in CORPUS[shard::SHARDS]:
            yield load(path)

    results = await replayer.replay_workflows(histories(), raise_on_replay_failure=False)
    failed = {run_id: str(failure) for run_id, failure in results.replay_failures.items()}
    assert failed == {}, failed


@workflow.defn(name="PartnerMigration")
class ChangedMigration(PartnerMigration):
    """An unpatched change: a timer before the notice, where the recorded runs had none."""

    @workflow.run
    async def run(self, inp: MigrationInput) -> MigrationStatus:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(inp)


async def test_an_unpatched_change_is_caught() -> None:
    migrations = [p for p in CORPUS if "__migration-" in p.name]
    assert migrations
    replayer = Replayer(
        workflows=[ChangedMigration],
        data_converter=pydantic_data_converter,
        workflow_runner=worker.WORKFLOW_RUNNER,
    )
    with pytest.raises(workflow.NondeterminismError):
        await replayer.replay_workflow(load(migrations[0]))


SDK_ORDERING = (
    Path(__file__).parents[1] / "bench/findings/nde-expansion-update-in-activity-task.json.gz"
)


@pytest.mark.xfail(
    strict=True,
    raises=workflow.NondeterminismError,
    reason="temporalio 1.35: an Update that reaches a fresh worker in the workflow task of the "
    "completion that opens its step, after a query made the worker apply that completion, is "
    "applied after it live, before it on replay (README, 'Known issues'). Recorded before steps "
    "opened through record_and_wait; strict, so a fixed SDK turns this red",
)
async def test_an_update_delivered_with_the_completion_that_opens_its_step_replays() -> None:
    """Found by the soak (bench/soak.py, seed 7): 1 run in 400."""
    history = WorkflowHistory.from_json(
        "expansion-soak7-0022", gzip.decompress(SDK_ORDERING.read_bytes()).decode()
    )
    replayer = Replayer(
        workflows=worker.WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=worker.WORKFLOW_RUNNER,
        interceptors=worker.INTERCEPTORS,
    )
    await replayer.replay_workflow(history)
