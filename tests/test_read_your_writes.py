"""P-8, read your writes: a start answers once its first step is open, so the step sent right
after the answer is taken; a step's answer is what the next read shows; every read is answered
from the store — with the worker stopped too, while starts and steps answer within their bound
(202 / 503 with Retry-After) instead of hanging; and no API code path queries a workflow."""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import sys
import time
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from kwanus.models.common import Awaiting, RecordEvent
from kwanus.settings import Settings
from policy.vocabulary import Body, ProcessKind, ProcessStatus
from store import repo
from store.db import Database
from store.tables import Process
from testdata.factories import proposal_body, review
from tests.apistack import Api, api_alone, eventually, unique
from tests.conftest import end_runs
from tests.test_readiness import WorkerProcess, temporal_target

ROOT = Path(__file__).resolve().parent.parent
APPROVE = {"decision": "approve", "rationale": "sound"}


async def test_the_first_step_is_taken_right_after_a_start_answers(
    api: Api, request: pytest.FixtureRequest
) -> None:
    """P-8: each start answers with its first step open — the step sent at once is taken, and
    the read at once shows it: an expansion's reviews, a migration's plan, a remediation's root
    cause, the stewardship sign-offs; a deprecation notice is readable at once."""
    partner_id = unique("rw")
    acme = await api.partner(partner_id)
    eid = unique("rw")
    started = await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=acme)
    assert started.status_code == 202, started.text
    assert (started.json()["step"], started.headers.get("Retry-After")) == ("reviews", None)
    assert {a["actor"] for a in started.json()["awaiting"]} == {b.value for b in Body}
    tsc = api.token("TSC")
    taken = await api.http.post(f"/v1/expansions/{eid}/reviews", json=review(Body.TSC), headers=tsc)
    assert taken.status_code == 200, taken.text
    assert "TSC" in taken.json()["reviews"]

    mid = unique("rw-mig")
    migration = {
        "id": mid,
        "partner_id": partner_id,
        "trigger": "os_major_version",
        "type": "version",
        "subtype": "os",
        "target": {"os_version": "5.0", "api_version": "3.0"},
    }
    started = await api.http.post("/v1/migrations", json=migration, headers=tsc)
    assert started.status_code == 202, started.text
    assert started.json()["step"] == "plan"
    plan = {"strategy": "s", "compatibility_plan": "c", "testing_plan": "t", "rollback_plan": "r"}
    taken = await api.http.post(f"/v1/migrations/{mid}/plan", json=plan, headers=acme)
    assert taken.status_code == 200, taken.text
    assert (await api.http.get(f"/v1/migrations/{mid}", headers=acme)).json()["plan"]

    rid = unique("rw-rem")
    violation = {"id": rid, "kind": "data_leak", "severity": "minor", "description": "a leak"}
    started = await api.http.post(
        f"/v1/partners/{partner_id}/violations", json=violation, headers=api.token("SCO")
    )
    assert started.status_code == 202, started.text
    assert started.json()["step"] == "root_cause"
    taken = await api.http.post(
        f"/v1/remediations/{rid}/root-cause", json={"summary": "found"}, headers=acme
    )
    assert taken.status_code == 200, taken.text

    report = unique("rw-stw")
    started = await api.http.post(
        "/v1/stewardship/run", json={"id": report}, headers=api.token("ops")
    )
    assert started.status_code == 202, started.text
    assert started.json()["step"] == "signoffs"
    taken = await api.http.post(
        f"/v1/stewardship/reports/{report}/signoff", json={"notes": "fine"}, headers=tsc
    )
    assert taken.status_code == 200, taken.text

    notice = {"id": unique("rw-dep"), "kind": "api", "version": "0.1", "replacement": "3.0"}
    started = await api.http.post("/v1/deprecations", json=notice, headers=tsc)
    assert started.status_code == 202, started.text
    read = await api.http.get(f"/v1/deprecations/{notice['id']}", headers=tsc)
    assert read.status_code == 200, read.text
    assert read.json()["notice"]["version"] == "0.1"
    started_ids = [
        f"expansion-{eid}",
        f"migration-{mid}",
        f"remediation-{rid}",
        f"stewardship-{report}",
        f"deprecation-{notice['id']}",
    ]
    await end_runs(api.env.client, started_ids, request.node.name)  # the corpus: P-8's runs


async def live_equals_stored(api: Api, path: str, workflow_id: str) -> bool:
    """Once the run is parked, the store's projection is the workflow's own state, field for
    field (the workflow's `status` query: a test may ask it, the API never does)."""
    ops = api.token("ops")

    async def same() -> bool:
        live = await api.env.client.get_workflow_handle(workflow_id).query("status")
        stored = (await api.http.get(path, headers=ops)).json()
        return bool(live == stored)

    return bool(await eventually(same, within=10))


async def test_a_steps_answer_is_what_the_next_read_shows(
    api: Api, request: pytest.FixtureRequest
) -> None:
    """P-8, submission to release with no wait in between: each step is sent right after the
    previous answer and taken; each answer comes once the process is at rest — the next step
    open (the last review's answer awaits the votes), the release's in Monitoring — and is
    exactly what a read right after it shows; the projection is then the workflow's own state,
    field for field."""
    acme = await api.partner(unique("rw"))
    bodies = {b: api.token(b.value) for b in Body}
    eid = unique("agree")
    path = f"/v1/expansions/{eid}"
    started = await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=acme)
    assert started.status_code == 202, started.text
    assert await live_equals_stored(api, path, f"expansion-{eid}")

    async def step(route: str, body: dict[str, Any], who: dict[str, str]) -> dict[str, Any]:
        answer = await api.http.post(f"{path}/{route}", json=body, headers=who)
        assert answer.status_code == 200, answer.text
        read = await api.http.get(path, headers=who)
        assert read.json() == answer.json()
        return dict(answer.json())

    for body, headers in bodies.items():
        state = await step("reviews", review(body), headers)
    assert (state["stage"], state["step"]) == ("Approval", "votes")
    assert await live_equals_stored(api, path, f"expansion-{eid}")
    for headers in bodies.values():
        state = await step("votes", APPROVE, headers)
    assert (state["stage"], state["step"]) == ("Integration", "integration_plan")
    assert state["decision"]["outcome"] == "approved"
    plan = {"versioning": "semver", "compatibility_rules": "additive", "rollout_plan": "canary"}
    state = await step("integration-plan", plan, acme)
    assert state["step"] == "implementation"
    report = {"development": "PR-9", "testing": "CI-9", "documentation": "DOC-9"}
    state = await step("implementation", report, acme)
    assert (state["stage"], state["step"]) == ("Release", "release")
    release = {
        "version": "1.2.0",
        "migration_guide": "docs/1.2",
        "fallback_behaviour": "1.1 read-only",
        "compatibility": [{"kind": "runtime", "name": "kwanus-runtime", "version": "3.0"}],
    }
    state = await step("release", release, acme)
    assert (state["stage"], state["step"]) == ("Monitoring", None)
    assert await live_equals_stored(api, path, f"expansion-{eid}")
    await end_runs(api.env.client, [f"expansion-{eid}"], request.node.name)


def test_the_projection_keeps_the_later_of_two_events_of_one_instant(db: Database) -> None:
    """P-8: two events a run made in one workflow task (two votes taken together) may commit in
    either order; the projection keeps the later one's state, so a read never goes back."""
    at = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)

    def event(seq: int, votes: list[str]) -> RecordEvent:
        return RecordEvent(
            key=f"expansion-x:vote:{seq}",
            workflow_id="expansion-x",
            process=ProcessKind.EXPANSION,
            process_id="x",
            partner_id="acme",
            event="voted",
            actor="TSC",
            at=at,
            stage="Approval",
            status=ProcessStatus.ACTIVE,
            awaiting=[Awaiting(actor="CGB", action="vote", deadline=at + timedelta(days=7))],
            policy_version=1,
            state={"votes": votes},
            seq=seq,
        )

    with db.session() as session:
        assert repo.record_event(session=session, event=event(2, ["TSC", "SCO"]))
        assert repo.record_event(session=session, event=event(1, ["TSC"]))  # committed last
    with db.session() as session:
        row = session.get(Process, "expansion-x")
        assert row is not None and row.state == {"votes": ["TSC", "SCO"]} and row.seq == 2


def test_no_api_code_path_queries_a_workflow() -> None:
    """P-8: the API never asks a workflow (a query needs a worker, and a query reaching a fresh
    worker is the trigger of the SDK ordering bug in the README's known issues): no call of a
    `query` method, nor of the workflow service's query, anywhere in the API's code."""
    found = []
    for path in sorted((ROOT / "api").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"query", "query_workflow"}:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Name) and "Query" in node.id and "Workflow" in node.id:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.id}")
    assert found == []


def api_without_worker(
    env: WorkflowEnvironment, db: Database, task_queue: str, wait: float
) -> AbstractAsyncContextManager[Api]:
    """The API alone on `task_queue` (its worker runs elsewhere), answering within `wait` s."""
    config = Settings(database_url=db.url, task_queue=task_queue, worker_wait_seconds=wait)
    return api_alone(env, db, config)


async def worker_process(env: WorkflowEnvironment, db: Database, task_queue: str) -> WorkerProcess:
    """`kwanus worker` in a process of its own, polling `task_queue`, on the test's database."""
    environment = {
        **os.environ,
        "KWANUS_DATABASE_URL": db.url,
        "KWANUS_TEMPORAL_ADDRESS": temporal_target(env),
        "KWANUS_TASK_QUEUE": task_queue,
        "KWANUS_WORKER_METRICS_PORT": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "worker",
        env=environment,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    worker = WorkerProcess(proc)
    await worker.logged("worker polling", within=30)
    return worker


async def timed(call: Any) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    resp = await call
    return resp, time.monotonic() - began


async def test_reads_answer_while_the_worker_is_stopped(
    dev_env: WorkflowEnvironment, db: Database
) -> None:
    """P-8 with the only worker SIGSTOPped: every read answers from the store in its usual
    time; a step answers 503 with Retry-After within its bound (it may still be taken once a
    worker does: sent again, it is taken once); a start answers 202 with Retry-After and `step`
    null, its read 503 until a worker records it; once the worker goes on, the same start
    again answers with its first step open."""
    wait = 2.0
    task_queue = f"kwanus-test-{uuid.uuid4().hex[:10]}"
    worker = await worker_process(dev_env, db, task_queue)
    try:
        async with api_without_worker(dev_env, db, task_queue, wait) as alone:
            http = alone.http
            partner_id = unique("stop")
            acme = await alone.partner(partner_id)
            tsc, sco = alone.token("TSC"), alone.token("SCO")
            eid = unique("stop")
            path = f"/v1/expansions/{eid}"
            started = await http.post("/v1/expansions", json=proposal_body(id=eid), headers=acme)
            assert started.status_code == 202 and started.json()["step"] == "reviews"

            assert worker.proc.pid is not None
            os.kill(worker.proc.pid, signal.SIGSTOP)
            try:
                for url, who in (
                    (path, acme),
                    ("/v1/expansions?status=active", acme),
                    ("/v1/me/pending", tsc),
                    (f"{path}/decision-record", acme),
                    (f"/v1/partners/{partner_id}", acme),
                ):
                    resp, took = await timed(http.get(url, headers=who))
                    assert resp.status_code == 200, (url, resp.text)
                    assert took < 1.0, (url, took)

                resp, took = await timed(
                    http.post(f"{path}/reviews", json=review(Body.TSC), headers=tsc)
                )
                assert resp.status_code == 503, resp.text
                assert resp.headers["Retry-After"] == "2"
                assert wait <= took < wait + 2.0, took
                # A burst past Temporal's cap on Updates in flight on one run: 503s, never 500.
                burst = await asyncio.gather(
                    *(
                        http.post(f"{path}/reviews", json=review(Body.TSC), headers=tsc)
                        for _ in range(12)
                    )
                )
                assert {r.status_code for r in burst} == {503}, [r.text for r in burst]

                later = unique("stop")
                resp, took = await timed(
                    http.post("/v1/expansions", json=proposal_body(id=later), headers=acme)
                )
                assert resp.status_code == 202, resp.text
                assert resp.headers["Retry-After"] == "2" and resp.json()["step"] is None
                assert took < wait + 2.0, took
                unread = await http.get(f"/v1/expansions/{later}", headers=acme)
                assert unread.status_code in (200, 503), unread.text
                if unread.status_code == 503:
                    assert unread.headers["Retry-After"] == "2"
            finally:
                os.kill(worker.proc.pid, signal.SIGCONT)

            again = await http.post(f"{path}/reviews", json=review(Body.TSC), headers=tsc)
            # 409: one sent while the worker was stopped was taken when it went on — its record
            # may still be in flight, so the store shows it a moment later — and only once.
            assert again.status_code in (200, 409), again.text

            async def reviewed() -> list[str]:
                return list((await http.get(path, headers=sco)).json()["reviews"])

            assert await eventually(reviewed) == ["TSC"]

            async def opened() -> httpx.Response | None:
                resp = await http.post("/v1/expansions", json=proposal_body(id=later), headers=acme)
                return resp if "Retry-After" not in resp.headers else None

            resp = await eventually(opened, within=30)
            assert resp is not None and resp.status_code == 202
            assert resp.json()["step"] == "reviews"
            taken = await http.post(
                f"/v1/expansions/{later}/reviews", json=review(Body.SCO), headers=sco
            )
            assert taken.status_code == 200, taken.text
    finally:
        if worker.proc.returncode is None:
            worker.proc.kill()
            await worker.proc.wait()
