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

`--through-api` runs the same race the way the API meets it since P-8, where no route queries a
workflow (api/processes.py `read_state`): the poll is a read of the store, the step its Update.
(a) The toy workflows above, the query replaced by a read that does not reach Temporal — the
    store's copy of what the opening record wrote.
(b) The product: the real API in-process (`api.app.create_app`, httpx's ASGI transport) on a
    migrated SQLite store, the product's worker (`app.worker.build_worker`) started and stopped
    per round. A partner submits an expansion; the reviews' opening record (`window:reviews`,
    the run's third write) is held where it stands — the worker's own engine, as
    tests/test_crash.py `writes_blocked` holds a write — while the worker stops; then it
    completes with no worker running. A reviewer's GET of the expansion and POST of its review
    go at once, then a fresh worker starts; the history replays with the product's workflows
    (`app.worker.WORKFLOWS`). The API's Temporal client counts what it sends: no query.
Nothing then makes the SDK apply the completion on its own: the fresh worker's first task
carries it with the Update, which the SDK applies first, live as on replay — the Update is
refused (the step not open yet: the toy's "refused", the API's 409), and the same step sent
again is taken (the soak's driver re-sends a 409'd step while the read shows it awaited).

    python -m bench.findings.update_after_query --through-api --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    QueryWorkflowInput,
    StartWorkflowUpdateInput,
    StartWorkflowUpdateWithStartInput,
    WorkflowHandle,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

from api.app import create_app
from app import binaries
from app.worker import ACTIVITY_THREADS, WORKFLOW_RUNNER, WORKFLOWS, build_worker
from kwanus import contract
from kwanus.settings import Settings
from policy.vocabulary import Body
from store import repo
from store.db import Database
from store.migrate import upgrade
from store.schemas import TokenCreate
from testdata.factories import partner_body, proposal_body, review
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


OPENED: set[str] = set()  # the toy's store: runs whose opening record is on record


async def read_store(workflow_id: str) -> bool:
    """The poll as the API answers it since P-8: from the store, nothing reaches the run."""
    return workflow_id in OPENED


async def one_round(client: Client, wf: Any, *, through_api: bool = False) -> tuple[bool, str]:
    TOKENS.clear()
    STARTED.clear()
    async with worker(client):
        handle: WorkflowHandle[Any, None] = await client.start_workflow(
            wf.run, id=f"uaq-{uuid.uuid4().hex[:8]}", task_queue="update-after-query"
        )
        await STARTED.wait()
        await asyncio.sleep(0.2)
    await client.get_async_activity_handle(task_token=TOKENS[0]).complete(None)
    if through_api:
        OPENED.add(handle.id)  # the opening record is stored: the store shows the step open
        query = asyncio.create_task(read_store(handle.id))
    else:
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


async def toy_rounds(client: Client, rounds: int, *, through_api: bool = False) -> int:
    """Each toy workflow `rounds` times; returns how many histories did not replay."""
    not_replayable = 0
    for wf in (RecordThenWait, RecordAndWait):
        tally = {"accepted": 0, "refused": 0, "non-determinism": 0}
        for n in range(rounds):
            accepted, replay = await one_round(client, wf, through_api=through_api)
            tally["accepted" if accepted else "refused"] += 1
            tally["non-determinism"] += replay != "replays"
            verdict = "accepted" if accepted else "refused (not open yet)"
            print(f"{wf.__name__:15} round {n + 1:2}: Update {verdict:22} → {replay}")
        print(f"{wf.__name__}: {tally}\n")
        not_replayable += tally["non-determinism"]
    return not_replayable


async def main(rounds: int) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binaries.temporal_cli())
    )
    try:
        await toy_rounds(env.client, rounds)
    finally:
        await env.shutdown()


# --- (b) the product, through its API -------------------------------------------------------


class Gate:
    """Holds the write of one audit key where it stands, until released: on the worker's own
    engine (no hook in the product), at the record's first statement naming its key — its
    transaction holds the store's write lock by then, as with tests/test_crash.py
    `writes_blocked`. The run's earlier writes (`submitted`, the stage) go through."""

    def __init__(self, db: Database) -> None:
        self.key: str | None = None
        self.holding = threading.Event()
        self.released = threading.Event()
        event.listen(db.engine, "before_cursor_execute", self._before)

    def arm(self, key: str) -> None:
        self.holding.clear()
        self.released.clear()
        self.key = key

    def release(self) -> None:
        self.key = None
        self.released.set()

    def _before(self, *args: Any) -> None:  # conn, cursor, statement, parameters, ...
        key = self.key
        if key is not None and key in repr(args[3]):
            self.holding.set()
            self.released.wait(timeout=120)


class Sent(Interceptor):
    """What the API's Temporal client sends a workflow, counted."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        calls = self.calls

        class Counting(OutboundInterceptor):
            async def query_workflow(self, input: QueryWorkflowInput) -> Any:
                calls["query"] += 1
                return await super().query_workflow(input)

            async def start_workflow_update(
                self, input: StartWorkflowUpdateInput
            ) -> WorkflowUpdateHandle[Any]:
                calls["update"] += 1
                return await super().start_workflow_update(input)

            async def start_update_with_start_workflow(
                self, input: StartWorkflowUpdateWithStartInput
            ) -> WorkflowUpdateHandle[Any]:
                calls["update-with-start"] += 1
                return await super().start_update_with_start_workflow(input)

        return Counting(next)


@dataclass
class Product:
    """The API in-process and what a round needs to run the product's worker."""

    client: Client
    db: Database
    gate: Gate
    http: httpx.AsyncClient
    task_queue: str
    executor: ThreadPoolExecutor
    admin: dict[str, str]
    reviewer: dict[str, str]  # TSC's

    def worker(self) -> Worker:
        return build_worker(
            self.client, self.db, task_queue=self.task_queue, executor=self.executor
        )

    def token(self, role: str, partner_id: str | None = None) -> dict[str, str]:
        with self.db.session() as session:
            made = repo.create_token(
                session=session, token=TokenCreate(role=role, partner_id=partner_id)
            )
        return {"Authorization": f"Bearer {made.token}"}

    async def partner(self, partner_id: str) -> dict[str, str]:
        """A new partner and its token (a partner has at most 10 proposals open, E-2.1: a
        terminated run stays open in the store, no worker recorded its end)."""
        resp = await self.http.post(
            "/v1/partners", json=partner_body(partner_id), headers=self.admin
        )
        assert resp.status_code == 201, resp.text
        return self.token("partner", partner_id)


@contextlib.asynccontextmanager
async def product(env: WorkflowEnvironment, sent: Sent) -> AsyncIterator[Product]:
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(ACTIVITY_THREADS) as executor:
        url = f"sqlite:///{Path(tmp) / 'kwanus.db'}"
        upgrade(url)
        db = Database(url)
        task_queue = f"uaq-api-{uuid.uuid4().hex[:8]}"
        settings = Settings(database_url=url, task_queue=task_queue)
        config = env.client.config()
        config["interceptors"] = [sent]  # the API's own client: what it sends is counted
        app = create_app(settings, temporal=Client(**config))
        try:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://kwanus") as http:
                    p = Product(env.client, db, Gate(db), http, task_queue, executor, {}, {})
                    p.admin = p.token("admin")
                    p.reviewer = p.token(Body.TSC.value)
                    try:
                        yield p
                    finally:
                        p.gate.release()  # a round that failed lets its record go
        finally:
            db.dispose()


async def held(gate: Gate, submit: asyncio.Task[httpx.Response], within: float = 60.0) -> None:
    """Until the gate holds the record (the submission still waiting for the reviews to open)."""
    give_up = time.monotonic() + within
    while not gate.holding.is_set():
        if submit.done():
            raise RuntimeError(f"the submission answered first: {submit.result().text}")
        if time.monotonic() > give_up:
            raise TimeoutError(f"the reviews' opening record not written within {within:.0f} s")
        await asyncio.sleep(0.05)


async def untaken_completion(handle: WorkflowHandle[Any, Any]) -> bool:
    """The run's last activity completion is in no workflow task yet (no worker took it)."""
    events = [e.event_type async for e in handle.fetch_history_events()]
    last = max(i for i, t in enumerate(events) if t == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
    return EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED not in events[last:]


@dataclass
class ApiRound:
    staged: bool  # the opening record completed while no worker ran, not taken before the step
    shown: str | None  # the step the GET showed
    answer: str  # the POST of the review: its status, and a refusal's detail
    retry: int | None  # the same POST again after a refusal (as the soak's driver sends it)
    taken: bool  # the review is in the run's state at the end
    replay: str


async def api_round(p: Product) -> ApiRound:
    eid = f"uaq-{uuid.uuid4().hex[:8]}"
    wid = contract.expansion_workflow_id(eid)
    handle = p.client.get_workflow_handle(wid)
    partner = await p.partner(eid)
    p.gate.arm(f"{wid}:window:reviews")
    first = p.worker()
    running = asyncio.create_task(first.run())
    submit = asyncio.create_task(
        p.http.post("/v1/expansions", json=proposal_body(id=eid), headers=partner)
    )
    await held(p.gate, submit)
    stopping = asyncio.create_task(first.shutdown())
    await asyncio.sleep(1.0)  # its pollers have stopped; the record's activity still runs
    p.gate.release()
    await stopping  # the activity completed, then the worker stopped
    await running
    staged = await untaken_completion(handle)
    url = f"/v1/expansions/{eid}"
    poll = asyncio.create_task(p.http.get(url, headers=p.reviewer))
    step = asyncio.create_task(
        p.http.post(f"{url}/reviews", json=review(Body.TSC), headers=p.reviewer)
    )
    read = await poll
    await asyncio.sleep(1.0)
    async with p.worker():
        sent = await step
        answer = str(sent.status_code)
        retry = None
        if sent.status_code != 200:
            answer += f" ({sent.json().get('detail')})"
            resp = await p.http.post(f"{url}/reviews", json=review(Body.TSC), headers=p.reviewer)
            retry = resp.status_code
        submitted = await submit
        assert submitted.status_code == 202, submitted.text
        state = (await p.http.get(url, headers=p.reviewer)).json()
        history = await handle.fetch_history()
        await handle.terminate("round over")
    try:
        await Replayer(
            workflows=WORKFLOWS,
            data_converter=pydantic_data_converter,
            workflow_runner=WORKFLOW_RUNNER,
        ).replay_workflow(history)
        replay = "replays"
    except workflow.NondeterminismError as err:
        replay = "NON-DETERMINISM: " + str(err).split("Nondeterminism error: ")[-1][:80]
    shown = read.json().get("step") if read.status_code == 200 else f"HTTP {read.status_code}"
    taken = Body.TSC.value in state.get("reviews", {})
    return ApiRound(staged, shown, answer, retry, taken, replay)


async def product_rounds(env: WorkflowEnvironment, rounds: int) -> tuple[int, int, int]:
    """The product's expansion `rounds` times; returns how many rounds were staged, how many
    histories did not replay, and how many queries the API sent."""
    sent = Sent()
    tally = {"staged": 0, "taken at once": 0, "taken on retry": 0, "non-determinism": 0}
    async with product(env, sent) as p:
        for n in range(rounds):
            r = await api_round(p)
            tally["staged"] += r.staged
            tally["taken at once"] += r.answer == "200"
            tally["taken on retry"] += r.retry == 200
            tally["non-determinism"] += r.replay != "replays"
            again = f", again: {r.retry}" if r.retry is not None else ""
            print(
                f"PartnerExpansion round {n + 1:2}: "
                f"{'staged' if r.staged else 'NOT STAGED (a worker took the record)'}; "
                f"GET shows step {r.shown}; POST review: {r.answer}{again}; "
                f"review {'taken' if r.taken else 'NOT TAKEN'} → {r.replay}"
            )
    print(f"PartnerExpansion: {tally}")
    print(f"the API's client sent: {dict(sent.calls)} (a query would be counted as 'query')\n")
    return tally["staged"], tally["non-determinism"], sent.calls["query"]


async def main_through_api(rounds: int) -> None:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(binaries.temporal_cli()),
        search_attributes=contract.SEARCH_ATTRIBUTES,
    )
    try:
        began = time.monotonic()
        toy = await toy_rounds(env.client, rounds, through_api=True)
        print(
            f"through the API (toy): {2 * rounds} rounds, {toy} not replayable "
            f"({time.monotonic() - began:.0f} s)\n"
        )
        began = time.monotonic()
        staged, real, queries = await product_rounds(env, rounds)
        print(
            f"through the API (product): {rounds} rounds ({staged} staged), {real} not "
            f"replayable, {queries} queries sent ({time.monotonic() - began:.0f} s)"
        )
    finally:
        await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--through-api",
        action="store_true",
        help="the poll a read of the store (the API since P-8), not a query: the toy workflows, "
        "then the product's expansion through its API",
    )
    args = parser.parse_args()
    asyncio.run(main_through_api(args.rounds) if args.through_api else main(args.rounds))
