"""Attack 19 (hostile partner): P-1 / P-6 / P-8 answers through the HTTP API with real tokens."""

from __future__ import annotations

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest

from kwanus.temporal import start_process
from policy.vocabulary import Body
from testdata.factories import proposal_body, review
from tests.apistack import Api, eventually, unique

SECRET = "TOP-SECRET-NOTE-19"


def leaks(resp_text: str, *words: str) -> bool:
    return any(w in resp_text for w in words)


async def test_b_is_refused_a_id_and_sees_nothing(api: Api) -> None:
    a_id, b_id = unique("atka"), unique("atkb")
    alpha = await api.partner(a_id)
    beta = await api.partner(b_id)
    eid = unique("own")
    body = proposal_body(id=eid)
    started = await api.http.post("/v1/expansions", json=body, headers=alpha)
    assert started.status_code == 202, started.text
    for content in (body, proposal_body(id=eid, description="other content")):
        resp = await api.http.post("/v1/expansions", json=content, headers=beta)
        assert resp.status_code == 409, resp.text
        assert "Location" not in resp.headers
        assert "Retry-After" not in resp.headers
        assert not leaks(resp.text, a_id, "reviews", "Evaluation", "awaiting"), resp.text
    for method, path, payload in (
        ("GET", f"/v1/expansions/{eid}", None),
        ("GET", f"/v1/expansions/{eid}/decision-record", None),
        ("POST", f"/v1/expansions/{eid}/withdraw", {"reason": "x"}),
        (
            "POST",
            f"/v1/expansions/{eid}/integration-plan",
            {"versioning": "s", "compatibility_rules": "a", "rollout_plan": "c"},
        ),
    ):
        resp = await api.http.request(method, path, json=payload, headers=beta)
        assert resp.status_code == 404, (path, resp.status_code, resp.text)
    await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("over")


async def test_confidential_notes_never_reach_the_partner(api: Api) -> None:
    a_id = unique("atkc")
    alpha = await api.partner(a_id)
    eid = unique("conf")
    assert (
        await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=alpha)
    ).status_code == 202
    noted = {**review(Body.TSC), "confidential_notes": SECRET}
    resp = await api.http.post(
        f"/v1/expansions/{eid}/reviews", json=noted, headers=api.token("TSC")
    )
    assert resp.status_code == 200, resp.text
    assert SECRET in resp.text  # the body reads it whole
    # The partner's own answers: re-sent start (P-1), a read, a step (withdraw).
    again = await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=alpha)
    assert again.status_code == 202, again.text
    assert SECRET not in again.text
    read = await api.http.get(f"/v1/expansions/{eid}", headers=alpha)
    assert read.status_code == 200 and SECRET not in read.text
    rec = await api.http.get(f"/v1/expansions/{eid}/decision-record", headers=alpha)
    assert SECRET not in rec.text, rec.text
    audit = await api.http.get(
        "/v1/audit", params={"workflow_id": f"expansion-{eid}"}, headers=alpha
    )
    assert SECRET not in audit.text, audit.text
    notes = await api.http.get("/v1/notifications", headers=alpha)
    assert SECRET not in notes.text, notes.text
    out = await api.http.post(f"/v1/expansions/{eid}/withdraw", json={"reason": "x"}, headers=alpha)
    assert out.status_code == 200, out.text
    assert SECRET not in out.text, out.text
    # Resend the start of the closed process: same run, no Retry-After.
    await api.env.client.get_workflow_handle(f"expansion-{eid}").result()
    run = (await api.env.client.get_workflow_handle(f"expansion-{eid}").describe()).run_id
    closed = await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=alpha)
    assert closed.status_code == 202, closed.text
    assert closed.json()["status"] == "withdrawn", closed.text
    assert "Retry-After" not in closed.headers
    assert SECRET not in closed.text
    assert (await api.env.client.get_workflow_handle(f"expansion-{eid}").describe()).run_id == run


async def test_replayed_and_reordered_steps(api: Api) -> None:
    alpha = await api.partner(unique("atkr"))
    eid = unique("replay")
    assert (
        await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=alpha)
    ).status_code == 202
    tsc = api.token("TSC")
    first = await api.http.post(f"/v1/expansions/{eid}/reviews", json=review(Body.TSC), headers=tsc)
    assert first.status_code == 200, first.text
    again = await api.http.post(f"/v1/expansions/{eid}/reviews", json=review(Body.TSC), headers=tsc)
    assert again.status_code == 409, again.text
    early = await api.http.post(
        f"/v1/expansions/{eid}/votes", json={"decision": "approve", "rationale": "x"}, headers=tsc
    )
    assert early.status_code == 409, early.text
    plan = {"versioning": "semver", "compatibility_rules": "additive", "rollout_plan": "canary"}
    early = await api.http.post(f"/v1/expansions/{eid}/integration-plan", json=plan, headers=alpha)
    assert early.status_code == 409, early.text
    # wrong role: a partner reviewing, a body withdrawing
    wrong = await api.http.post(
        f"/v1/expansions/{eid}/reviews", json=review(Body.SCO), headers=alpha
    )
    assert wrong.status_code == 403, wrong.text
    await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("over")


async def test_edge_ids(api: Api) -> None:
    pid = unique("atke")
    alpha = await api.partner(pid)
    long_id = (unique("edge") + "a" * 64)[:64]  # one dev server serves every test and backend
    ok = await api.http.post("/v1/expansions", json=proposal_body(id=long_id), headers=alpha)
    assert ok.status_code == 202, ok.text
    assert ok.headers["Location"].endswith(long_id)
    got = await api.http.get(f"/v1/expansions/{long_id}", headers=alpha)
    assert got.status_code == 200, got.text
    too_long = await api.http.post("/v1/expansions", json=proposal_body(id="a" * 65), headers=alpha)
    assert too_long.status_code == 422
    dotted = unique("x") + ".y"
    d = await api.http.post("/v1/expansions", json=proposal_body(id=dotted), headers=alpha)
    assert d.status_code == 202, d.text
    assert (await api.http.get(f"/v1/expansions/{dotted}", headers=alpha)).status_code == 200
    tsc = api.token("TSC")
    for mid in (f"exp-{long_id}", "exp-x", "rem-x", "downgrade-x", "dep.x", "a.b"):
        migration = {
            "id": mid,
            "partner_id": pid,
            "trigger": "os_major_version",
            "type": "version",
            "subtype": "os",
            "target": {"os_version": "5.0", "api_version": "3.0"},
        }
        r = await api.http.post("/v1/migrations", json=migration, headers=tsc)
        assert r.status_code == 422, (mid, r.status_code, r.text)
    for wid in (f"expansion-{long_id}", f"expansion-{dotted}"):
        await api.env.client.get_workflow_handle(wid).terminate("over")


async def test_an_id_whose_run_temporal_let_go_is_never_taken_by_another(api: Api) -> None:
    await _let_go_then(api, by_other_partner=True)


async def test_an_id_whose_run_temporal_let_go_never_names_a_second_process(api: Api) -> None:
    """P-1: A's own id, other content, after the run was let go: 409, no second process."""
    await _let_go_then(api, by_other_partner=False)


async def _let_go_then(api: Api, *, by_other_partner: bool) -> None:
    """P-1/P-6: A's expansion closed and its run deleted (retention). B submits under A's id:
    must be 409 (the id names A's process in the store), never a new process under it."""
    a_id, b_id = unique("atkg"), unique("atkh")
    alpha = await api.partner(a_id)
    beta = await api.partner(b_id)
    eid = unique("gone")
    wid = f"expansion-{eid}"
    assert (
        await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=alpha)
    ).status_code == 202
    out = await api.http.post(f"/v1/expansions/{eid}/withdraw", json={"reason": "x"}, headers=alpha)
    assert out.status_code == 200, out.text
    await api.env.client.get_workflow_handle(wid).result()
    await api.env.client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=api.env.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=wid),
        )
    )

    async def gone() -> bool:
        return not await api.workflow_exists(wid)

    assert await eventually(gone, within=90)
    if by_other_partner:
        taken = await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=beta)
    else:
        taken = await api.http.post(
            "/v1/expansions", json=proposal_body(id=eid, description="other"), headers=alpha
        )
    started_again = await api.workflow_exists(wid)
    mine = await api.http.get(f"/v1/expansions/{eid}", headers=alpha)
    theirs = await api.http.get(f"/v1/expansions/{eid}", headers=beta)
    if await api.workflow_exists(wid):
        await api.env.client.get_workflow_handle(wid).terminate("over")
    # B learns nothing of A's process: no 202 echoing A's stage/status, no Location to it.
    assert taken.status_code == 409, taken.text
    assert "withdrawn" not in taken.text and "Location" not in taken.headers
    assert not started_again
    assert mine.json()["status"] == "withdrawn", mine.text
    assert theirs.status_code == 404, theirs.text


async def test_access_shows_the_release_right_after_its_answer(api: Api) -> None:
    """P-8: a release's answer is at rest (Monitoring); /access shows the granted capability."""
    pid = unique("atkx")
    acme = await api.partner(pid)
    bodies = {b: api.token(b.value) for b in Body}
    eid = unique("rel")
    base = f"/v1/expansions/{eid}"
    r = await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=acme)
    assert r.status_code == 202, r.text
    for body, headers in bodies.items():
        r = await api.http.post(f"{base}/reviews", json=review(body), headers=headers)
        assert r.status_code == 200, r.text
    assert r.json()["step"] == "votes", r.text
    for headers in bodies.values():
        r = await api.http.post(
            f"{base}/votes", json={"decision": "approve", "rationale": "ok"}, headers=headers
        )
        assert r.status_code == 200, r.text
    assert r.json()["step"] == "integration_plan", r.text
    plan = {"versioning": "semver", "compatibility_rules": "additive", "rollout_plan": "canary"}
    r = await api.http.post(f"{base}/integration-plan", json=plan, headers=acme)
    assert r.status_code == 200 and r.json()["step"] == "implementation", r.text
    report = {"development": "PR-9", "testing": "CI-9", "documentation": "DOC-9"}
    r = await api.http.post(f"{base}/implementation", json=report, headers=acme)
    assert r.status_code == 200 and r.json()["step"] == "release", r.text
    before = (await api.http.get(f"/v1/partners/{pid}/access", headers=acme)).json()
    assert "order-trends" not in str(before.get("capabilities")), before
    release = {
        "version": "1.2.0",
        "migration_guide": "docs/1.2",
        "fallback_behaviour": "1.1 read-only",
        "compatibility": [{"kind": "runtime", "name": "kwanus-runtime", "version": "3.0"}],
    }
    r = await api.http.post(f"{base}/release", json=release, headers=acme)
    assert r.status_code == 200 and r.json()["stage"] == "Monitoring", r.text
    after = (await api.http.get(f"/v1/partners/{pid}/access", headers=acme)).json()
    assert "order-trends" in str(after.get("capabilities")), after
    # and the release sent again: refused, naming it, nothing granted twice
    again = await api.http.post(f"{base}/release", json=release, headers=acme)
    assert again.status_code == 409, again.text
    await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("over")


async def test_an_unrecorded_run_reads_404_for_b_and_503_for_its_partner(api: Api) -> None:
    """P-6 on the 503 path: a run started but recorded by no worker is 404 to partner B (read
    and step), 503 with Retry-After to its own partner; B's start under its id is 409."""
    a_id = unique("atku")
    alpha = await api.partner(a_id)
    beta = await api.partner(unique("atkv"))
    eid = unique("unrec")
    await start_process(
        api.env.client,
        "PartnerExpansion",
        {},
        workflow_id=f"expansion-{eid}",
        task_queue="nobody-polls-this",
        partner_id=a_id,
        kind="expansion",
        stage="Evaluation",
        summary="unrecorded",
        memo={"partner_id": a_id, "content_sha256": "x"},
    )
    try:
        b_read = await api.http.get(f"/v1/expansions/{eid}", headers=beta)
        assert b_read.status_code == 404 and "Retry-After" not in b_read.headers, b_read.text
        b_step = await api.http.post(
            f"/v1/expansions/{eid}/withdraw", json={"reason": "x"}, headers=beta
        )
        assert b_step.status_code == 404, b_step.text
        b_start = await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=beta)
        assert b_start.status_code == 409 and "Location" not in b_start.headers, b_start.text
        a_read = await api.http.get(f"/v1/expansions/{eid}", headers=alpha)
        assert a_read.status_code == 503 and "Retry-After" in a_read.headers, a_read.text
    finally:
        await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("over")
