"""A minimal reproduction of the SDK ordering bug behind the soak's one non-replayable run
(README, Known issues), for the upstream report — and the check that `record_and_wait` (what
the product's steps do since) replays where the plain order does not.

The scenario, per round, on a real dev server:
1. a run awaits an activity (completed asynchronously by this script); its worker stops;
2. with no worker running, the activity completes, then a query and an Update are sent — the
   Update is admitted to the pending workflow task, whose first event is that completion;
3. a fresh worker starts. When it receives the query first (a legacy query task: the matcher
   picks query or workflow task at random), the SDK applies the completion to answer it; the
   workflow task that follows carries only the Update, whose validator now sees the step open:
   accepted after the run's commands from the completion. On replay the Update is applied
   before the completion — the commands come out in another order: TMPRL1100.

Each round prints whether the Update was accepted, and whether the history replays.

    python -m bench.findings.update_after_query --rounds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

from app import binaries
from workflows.steps import record_and_wait

TOKENS: list[bytes] = []
STARTED = asyncio.Event()
WINDOW = timedelta(hours=1)


@activity.defn
async def open_window() -> None:
    TOKENS.append(activity.info().task_token)
    STARTED.set()
    activity.raise_complete_async()


@activity.defn
async def write(what: str) -> None:
    return None


class _Step:
    def __init__(self) -> None:
        self.open = False
        self.done = False

    @workflow.update
    async def submit(self) -> None:
        self.done = True
        await workflow.execute_activity(write, "submitted", start_to_close_timeout=WINDOW)

    @submit.validator
    def check(self) -> None:
        if not self.open:
            raise ValueError("the step is not open")

    @workflow.query
    def is_open(self) -> bool:
        return self.open

    async def wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self.done, timeout=WINDOW)
        await workflow.wait_condition(workflow.all_handlers_finished)


@workflow.defn
class RecordThenWait(_Step):
    """The order the product's steps had: the record, then open the step, then the timer."""

    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(open_window, start_to_close_timeout=WINDOW)
        self.open = True
        await self.wait()


@workflow.defn
class RecordAndWait(_Step):
    """The product's steps since: the timer starts with the record; the completion only opens."""

    @workflow.run
    async def run(self) -> None:
        def opened() -> None:
            self.open = True

        await record_and_wait(
            lambda: workflow.execute_activity(open_window, start_to_close_timeout=WINDOW),
            opened,
            self.wait,
        )


def worker(client: Client) -> Worker:
    return Worker(
        client,
        task_queue="update-after-query",
        workflows=[RecordThenWait, RecordAndWait],
        activities=[open_window, write],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )


async def one_round(client: Client, wf: Any) -> tuple[bool, str]:
    TOKENS.clear()
    STARTED.clear()
    async with worker(client):
        handle: WorkflowHandle[Any, None] = await client.start_workflow(
            wf.run, id=f"uaq-{uuid.uuid4().hex[:8]}", task_queue="update-after-query"
        )
        await STARTED.wait()
        await asyncio.sleep(0.2)
    await client.get_async_activity_handle(task_token=TOKENS[0]).complete(None)
    query = asyncio.create_task(handle.query(wf.is_open))
    update = asyncio.create_task(
        handle.start_update(wf.submit, wait_for_stage=WorkflowUpdateStage.ACCEPTED)
    )
    await asyncio.sleep(1.0)
    accepted = True
    async with worker(client):
        await query
        try:
            await (await update).result()
            await handle.result()
        except Exception:
            accepted = False
            await handle.terminate("round over")
    history = await handle.fetch_history()
    try:
        await Replayer(
            workflows=[RecordThenWait, RecordAndWait], workflow_runner=UnsandboxedWorkflowRunner()
        ).replay_workflow(history)
        replay = "replays"
    except workflow.NondeterminismError as err:
        replay = "NON-DETERMINISM: " + str(err).split("Nondeterminism error: ")[-1][:80]
    return accepted, replay


async def main(rounds: int) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binaries.temporal_cli())
    )
    try:
        for wf in (RecordThenWait, RecordAndWait):
            tally = {"accepted": 0, "refused": 0, "non-determinism": 0}
            for n in range(rounds):
                accepted, replay = await one_round(env.client, wf)
                tally["accepted" if accepted else "refused"] += 1
                tally["non-determinism"] += replay != "replays"
                verdict = "accepted" if accepted else "refused (not open yet)"
                print(f"{wf.__name__:15} round {n + 1:2}: Update {verdict:22} → {replay}")
            print(f"{wf.__name__}: {tally}\n")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(main(parser.parse_args().rounds))
