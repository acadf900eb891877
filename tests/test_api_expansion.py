"""One proposal through the HTTP API with real tokens on the dev server, submission to release
(E-12.1), and refused steps: their status codes and no event in the history (P-2)."""

from __future__ import annotations

from typing import Any

from policy.vocabulary import Body
from testdata.factories import IMPLEMENTATION, INTEGRATION_PLAN, proposal_body, review
from tests.apistack import Api, eventually, unique

PROBLEM = "application/problem+json"


async def test_proposal_from_submission_to_release_over_http(api: Api) -> None:
    """E-12.1 over HTTP: reviews, votes, integration plan, implementation, release; ops find it
    by `KwanusStage='Approval'` while it is voted on; E-2.7 the release grants, and E-9.2 its
    compatibility is the partner's own."""
    acme = await api.partner("acme")
    bodies = {b: api.token(b.value) for b in Body}
    eid = unique("http")
    base = f"/v1/expansions/{eid}"
    resp = await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=acme)
    assert resp.status_code == 202

    async def stage_is(stage: str, step: str | None = None) -> dict[str, Any] | None:
        data: dict[str, Any] = (await api.http.get(base, headers=acme)).json()
        ok = data["stage"] == stage and (step is None or data["step"] == step)
        return data if ok else None

    assert await eventually(lambda: stage_is("Evaluation", "reviews"))
    for body, headers in bodies.items():
        resp = await api.http.post(f"{base}/reviews", json=review(body), headers=headers)
        assert resp.status_code == 200, resp.text
    assert await eventually(lambda: stage_is("Approval", "votes"))

    async def in_approval() -> list[str]:
        query = "KwanusStage='Approval' AND KwanusPartnerId='acme'"
        return [wf.id async for wf in api.env.client.list_workflows(query)]

    assert f"expansion-{eid}" in await eventually(in_approval)

    for headers in bodies.values():
        resp = await api.http.post(
            f"{base}/votes", json={"decision": "approve", "rationale": "sound"}, headers=headers
        )
        assert resp.status_code == 200, resp.text
    state = await eventually(lambda: stage_is("Integration", "integration_plan"))
    assert state["decision"]["outcome"] == "approved"

    plan = {"versioning": "semver", "compatibility_rules": "additive", "rollout_plan": "canary"}
    assert (
        await api.http.post(f"{base}/integration-plan", json=plan, headers=acme)
    ).status_code == 200
    assert await eventually(lambda: stage_is("Integration", "implementation"))
    report = {"development": "PR-9", "testing": "CI-9", "documentation": "DOC-9"}
    assert (
        await api.http.post(f"{base}/implementation", json=report, headers=acme)
    ).status_code == 200
    assert await eventually(lambda: stage_is("Release", "release"))
    release = {
        "version": "1.2.0",
        "migration_guide": "docs/1.2",
        "fallback_behaviour": "1.1 read-only",
        "compatibility": [{"kind": "runtime", "name": "kwanus-runtime", "version": "3.0"}],
    }
    assert (await api.http.post(f"{base}/release", json=release, headers=acme)).status_code == 200
    assert await eventually(lambda: stage_is("Monitoring"))
    partner = (await api.http.get("/v1/partners/acme", headers=acme)).json()
    assert "order-trends" in partner["capabilities"]
    assert [(c["kind"], c["version"]) for c in partner["compatibility"]] == [("runtime", "3.0")]
    await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("test over")


async def test_refused_steps_over_http_leave_history_unchanged(api: Api) -> None:
    """P-2 on the real server: a refused step is 403/404/409/422 problem+json, and the workflow
    history does not grow by a single event."""
    acme = await api.partner("acme")
    globex = await api.partner("globex")
    tsc, cgb = api.token("TSC"), api.token("CGB")
    eid = unique("refused")
    base = f"/v1/expansions/{eid}"
    assert (
        await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=acme)
    ).status_code == 202

    async def reviewing() -> bool:
        return bool((await api.http.get(base, headers=acme)).json()["step"] == "reviews")

    assert await eventually(reviewing)
    assert (
        await api.http.post(f"{base}/reviews", json=review(Body.TSC), headers=tsc)
    ).status_code == 200
    handle = api.env.client.get_workflow_handle(f"expansion-{eid}")

    async def settled() -> bool:
        data = (await api.http.get(base, headers=acme)).json()
        return "TSC" in data["reviews"]

    assert await eventually(settled)
    before = len((await handle.fetch_history()).events)

    cases = [
        (f"{base}/reviews", review(Body.TSC), tsc, 409),  # E-2.2: once
        (f"{base}/reviews", review(Body.TSC), cgb, 422),  # E-4.4: CGB's own criteria
        (f"{base}/votes", {"decision": "approve"}, cgb, 409),  # not in Approval
        (
            f"{base}/integration-plan",
            {"versioning": "x", "compatibility_rules": "y", "rollout_plan": "z"},
            acme,
            409,
        ),
        (f"{base}/integration-plan", {"versioning": "x"}, acme, 422),  # E-2.5, refused by the API
        (f"{base}/reviews", review(Body.TSC), acme, 403),  # a partner is no body (P-6)
        (f"{base}/withdraw", {}, globex, 404),  # another partner's: never revealed
        (f"{base}/deadline", {"until": "2000-01-01T00:00:00Z", "reason": "x"}, cgb, 422),
    ]
    for url, body, headers, expected in cases:
        resp = await api.http.post(url, json=body, headers=headers)
        assert resp.status_code == expected, (url, resp.text)
        assert resp.headers["content-type"] == PROBLEM
    incomplete = await api.http.post(
        f"{base}/integration-plan", json={"versioning": "x"}, headers=acme
    )
    assert incomplete.json()["rule"] == "E-2.5"
    assert set(incomplete.json()["errors"]) == {"compatibility_rules", "rollout_plan"}
    assert len((await handle.fetch_history()).events) == before
    await handle.terminate("test over")


async def test_an_implementation_report_that_is_no_reference_is_refused_over_http(
    api: Api,
) -> None:
    """E-2.6: development, testing, documentation each a reference — one repeated and one not a
    reference are 422 with both fields named, nothing sent to the run (its history does not
    grow), the report still awaited; a checked report then moves the expansion to Release."""
    acme = await api.partner("acme")
    eid = unique("refs")
    base = f"/v1/expansions/{eid}"
    resp = await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=acme)
    assert resp.status_code == 202, resp.text

    async def at(step: str) -> dict[str, Any] | None:
        data: dict[str, Any] = (await api.http.get(base, headers=acme)).json()
        return data if data["step"] == step else None

    assert await eventually(lambda: at("reviews"))
    bodies = {b: api.token(b.value) for b in Body}
    for body, headers in bodies.items():
        resp = await api.http.post(f"{base}/reviews", json=review(body), headers=headers)
        assert resp.status_code == 200, resp.text
    assert await eventually(lambda: at("votes"))
    vote = {"decision": "approve", "rationale": "sound"}
    for headers in bodies.values():
        assert (await api.http.post(f"{base}/votes", json=vote, headers=headers)).is_success
    assert await eventually(lambda: at("integration_plan"))
    plan = await api.http.post(f"{base}/integration-plan", json=INTEGRATION_PLAN, headers=acme)
    assert plan.is_success, plan.text
    assert await eventually(lambda: at("implementation"))
    handle = api.env.client.get_workflow_handle(f"expansion-{eid}")
    before = len((await handle.fetch_history()).events)

    report = {
        "development": "https://git.example.com/acme/widget/pull/7",
        "testing": "HTTPS://GIT.example.com/acme/widget/pull/7",  # the same URL
        "documentation": "../docs/widget.md",
    }
    resp = await api.http.post(f"{base}/implementation", json=report, headers=acme)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == PROBLEM
    problem = resp.json()
    assert problem["rule"] == "E-2.6"
    assert problem["detail"] == "invalid request: documentation, testing"  # the API's refusal
    assert problem["errors"] == {
        "testing": "the same reference as development: each document is its own (E-2.6)",
        "documentation": problem["errors"]["documentation"],
    }
    assert problem["errors"]["documentation"].startswith("not a reference")
    assert len((await handle.fetch_history()).events) == before
    state = await at("implementation")
    assert state is not None and state["implementation"] is None

    taken = await api.http.post(f"{base}/implementation", json=IMPLEMENTATION, headers=acme)
    assert taken.status_code == 200 and taken.json()["step"] == "release", taken.text
    await handle.terminate("test over")
