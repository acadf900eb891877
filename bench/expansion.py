"""One expansion driven both ways, the steps of the lifecycle and votes scenarios: over HTTP as
its parties would (ours), and the same Updates straight to Temporal with a bare client (the
baseline). A step sent before the workflow awaits it is sent again after RETRY_PAUSE, on both
sides alike."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from bench.harness import BenchError, Harness
from kwanus import contract
from kwanus.contract import Refusal
from kwanus.hashing import canonical_sha256
from kwanus.models.common import Act
from kwanus.models.expansion import ExpansionInput, ExpansionStatus
from kwanus.temporal import start
from policy.forms import ImplementationReport, IntegrationPlan, Release
from policy.proposal import Proposal
from policy.review import Review
from policy.vocabulary import Body
from policy.vote import Vote
from testdata.factories import IMPLEMENTATION, INTEGRATION_PLAN, RELEASE, proposal_body, review

RETRY_PAUSE = 0.05  # a step sent before it is awaited is sent again after this (both sides)
PROPOSAL: dict[str, Any] = proposal_body()
VOTE = {"decision": "approve", "rationale": "bench"}


# -- over HTTP ---------------------------------------------------------------------------------


async def api_step(h: Harness, eid: str, action: str, body: dict[str, Any], who: str) -> Any:
    """POST one step; a 409 (not awaited yet) is sent again after a short pause."""
    give_up = time.monotonic() + 300
    while True:
        resp = await h.http.post(
            f"/v1/expansions/{eid}/{action}", json=body, headers=h.headers[who]
        )
        if resp.status_code == 200:
            return resp.json()
        # 404: submitted, but its first event is not stored yet and the workflow did not
        # answer the API's query within 5 s (a busy worker) — the step is sent again.
        if resp.status_code not in (404, 409) or time.monotonic() > give_up:
            raise BenchError(f"{eid} {action} by {who}: {resp.status_code} {resp.text}")
        await asyncio.sleep(RETRY_PAUSE)


async def api_state(h: Harness, eid: str, who: str) -> Any:
    resp = await h.http.get(f"/v1/expansions/{eid}", headers=h.headers[who])
    if resp.status_code != 200:
        raise BenchError(f"GET {eid}: {resp.status_code} {resp.text}")
    return resp.json()


async def api_to_votes(h: Harness, i: int, eid: str) -> None:
    pid = f"api-{i:04d}"
    resp = await h.http.post("/v1/expansions", json={**PROPOSAL, "id": eid}, headers=h.headers[pid])
    if resp.status_code != 202:
        raise BenchError(f"submit {eid}: {resp.status_code} {resp.text}")
    for body in Body:
        await api_step(h, eid, "reviews", review(body), body.value)
    while (step := (await api_state(h, eid, pid))["step"]) not in ("votes", "plans"):  # noqa: ASYNC110
        await asyncio.sleep(RETRY_PAUSE)
    if step == "plans":
        raise BenchError(f"{eid}: the bench proposal should not need risk plans")


async def api_lifecycle(h: Harness, i: int, eid: str = "") -> None:
    eid = eid or f"api-life-{i}"
    pid = f"api-{i:04d}"
    await api_to_votes(h, i, eid)
    for body in Body:
        state = await api_step(h, eid, "votes", VOTE, body.value)
        if state["decision"] is not None:
            break
    for action, form in (
        ("integration-plan", INTEGRATION_PLAN),
        ("implementation", IMPLEMENTATION),
        ("release", RELEASE),
    ):
        await api_step(h, eid, action, form, pid)


# -- straight to Temporal ----------------------------------------------------------------------


async def bare_submit(h: Harness, i: int, eid: str) -> None:
    pid = f"bare-{i:04d}"
    proposal = Proposal.model_validate(PROPOSAL)
    sha = canonical_sha256(proposal)
    await start(
        h.client,
        contract.EXPANSION,
        ExpansionInput(
            expansion_id=eid,
            partner_id=pid,
            partner_tier="verified",
            proposal=proposal,
            proposal_sha256=sha,
            policy=h.policy,
            submitted_by=f"bench-{pid}",
        ),
        process_id=eid,
        task_queue=h.procs.settings.task_queue,
        partner_id=pid,
        summary=f"Expansion {eid} · partner {pid} · category A",
        memo={"partner_id": pid, "content_sha256": sha},
    )


async def bare_step(handle: WorkflowHandle[Any, Any], update: str, act: Act[Any]) -> Any:
    give_up = time.monotonic() + 300
    while True:
        try:
            return await handle.execute_update(update, act, result_type=ExpansionStatus)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if not (
                isinstance(cause, ApplicationError)
                and cause.type == Refusal.WRONG_STAGE
                and time.monotonic() < give_up
            ):
                raise
        await asyncio.sleep(RETRY_PAUSE)


async def bare_to_votes(h: Harness, i: int, eid: str) -> WorkflowHandle[Any, Any]:
    await bare_submit(h, i, eid)
    workflow_id = contract.expansion_workflow_id(eid)
    handle = h.client.get_workflow_handle(workflow_id)
    for body in Body:
        act = Act[Any](actor=h.actors[body.value], body=Review.model_validate(review(body)))
        await bare_step(handle, "review", act)
    while True:
        state = await handle.query("status", result_type=ExpansionStatus)
        if state.step in ("votes", "plans"):
            break
        await asyncio.sleep(RETRY_PAUSE)
    if state.step == "plans":
        raise BenchError(f"{eid}: the bench proposal should not need risk plans")
    return handle


async def bare_lifecycle(h: Harness, i: int) -> None:
    eid = f"bare-life-{i}"
    pid = f"bare-{i:04d}"
    handle = await bare_to_votes(h, i, eid)
    for body in Body:
        act = Act[Any](actor=h.actors[body.value], body=Vote.model_validate(VOTE))
        state = await bare_step(handle, "vote", act)
        if state.decision is not None:
            break
    partner = h.actors[pid]
    for update, form in (
        ("integration_plan", IntegrationPlan.model_validate(INTEGRATION_PLAN)),
        ("implementation", ImplementationReport.model_validate(IMPLEMENTATION)),
        ("release", Release.model_validate(RELEASE)),
    ):
        await bare_step(handle, update, Act[Any](actor=partner, body=form))
