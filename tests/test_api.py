"""The real API, worker and dev server (no mocks): roles, problem+json, the thin path."""

from __future__ import annotations

from sqlmodel import select
from temporalio.api.sdk.v1 import WorkflowMetadata

from store.tables import AuditEvent, Partner, Process
from testdata.factories import partner_body, proposal_body
from tests.apistack import Api, eventually, unique

PROBLEM = "application/problem+json"


# --- authentication and roles (P-6) ---------------------------------------------------------


async def test_no_token_is_401_problem(api: Api) -> None:
    """P-6: no token, a malformed one or an unknown one -> 401 problem+json."""
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        resp = await api.http.get("/v1/partners", headers=headers)
        assert resp.status_code == 401
        assert resp.headers["content-type"] == PROBLEM
        assert resp.json()["status"] == 401
        assert resp.headers["www-authenticate"] == "Bearer"


async def test_partner_token_cannot_register_partners(api: Api) -> None:
    """P-6: registering partners is for admin only -> 403 for a partner (or a body)."""
    partner = await api.partner("acme")
    for headers in (partner, api.token("CGB"), api.token("ops")):
        resp = await api.http.post("/v1/partners", json=partner_body("evil"), headers=headers)
        assert resp.status_code == 403, resp.text
        assert resp.headers["content-type"] == PROBLEM
    with api.db.session() as session:
        assert session.get(Partner, "evil") is None


async def test_partner_sees_only_itself(api: Api) -> None:
    """P-6: another partner's profile is 404, not 403, and lists are filtered."""
    acme = await api.partner("acme")
    await api.partner("globex")
    assert (await api.http.get("/v1/partners/globex", headers=acme)).status_code == 404
    assert (await api.http.get("/v1/partners/acme", headers=acme)).status_code == 200
    listed = (await api.http.get("/v1/partners", headers=acme)).json()
    assert [p["id"] for p in listed] == ["acme"]
    ops = (await api.http.get("/v1/partners", headers=api.token("ops"))).json()
    assert [p["id"] for p in ops] == ["acme", "globex"]


async def test_admin_issues_tokens_bound_to_one_role(api: Api) -> None:
    await api.partner("acme")
    resp = await api.http.post(
        "/v1/tokens", json={"role": "partner", "partner_id": "acme"}, headers=api.admin
    )
    assert resp.status_code == 201
    token = resp.json()["token"]
    me = await api.http.get("/v1/partners", headers={"Authorization": f"Bearer {token}"})
    assert [p["id"] for p in me.json()] == ["acme"]

    missing = await api.http.post("/v1/tokens", json={"role": "partner"}, headers=api.admin)
    assert missing.status_code == 422 and "partner_id" in missing.json()["errors"]
    unknown = await api.http.post(
        "/v1/tokens", json={"role": "partner", "partner_id": "ghost"}, headers=api.admin
    )
    assert unknown.status_code == 422 and "partner_id" in unknown.json()["errors"]
    bad_role = await api.http.post("/v1/tokens", json={"role": "king"}, headers=api.admin)
    assert bad_role.status_code == 422 and "role" in bad_role.json()["errors"]
    by_partner = await api.http.post(
        "/v1/tokens", json={"role": "admin"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert by_partner.status_code == 403


# --- partners: bad input names every field, stores nothing ----------------------------------


async def test_bad_partner_names_every_field_and_stores_nothing(api: Api) -> None:
    body = partner_body("Bad Id!", tier="", runtime={"name": "x"}, surprise=1)
    del body["name"]
    resp = await api.http.post("/v1/partners", json=body, headers=api.admin)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == PROBLEM
    errors = resp.json()["errors"]
    assert {"id", "name", "tier", "runtime.version", "surprise"} <= set(errors)
    with api.db.session() as session:
        assert session.exec(select(Partner)).all() == []


async def test_partner_with_unbounded_permission_refused(api: Api) -> None:
    """E-5.2: an unbounded permission is refused, with the rule named; nothing stored."""
    resp = await api.http.post(
        "/v1/partners",
        json=partner_body("acme", permissions=["orders:read", "orders:*"]),
        headers=api.admin,
    )
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["rule"] == "E-5.2"
    assert set(problem["errors"]) == {"permissions.1"}
    with api.db.session() as session:
        assert session.get(Partner, "acme") is None


async def test_duplicate_partner_is_409(api: Api) -> None:
    await api.partner("acme")
    resp = await api.http.post("/v1/partners", json=partner_body("acme"), headers=api.admin)
    assert resp.status_code == 409


# --- the thin path: submit an expansion, see it live ----------------------------------------


async def test_incomplete_proposal_names_every_missing_field_and_starts_nothing(api: Api) -> None:
    """E-2.1, E-2.1a: all missing fields in one 422; no workflow started, no row written."""
    acme = await api.partner("acme")
    eid = unique("incomplete")
    body = proposal_body(id=eid, category="B", description="  ")
    for field in ("justification", "security_impact", "lifecycle_plan"):
        del body[field]
    body["requested_capabilities"][0]["kind"] = "teleport"
    resp = await api.http.post("/v1/expansions", json=body, headers=acme)
    assert resp.status_code == 422
    problem = resp.json()
    assert set(problem["errors"]) == {
        "description",
        "justification",
        "security_impact",
        "lifecycle_plan",
        "migration_plan",
        "requested_capabilities.0.kind",
    }
    assert "E-2.1" in problem["rule"] and "E-2.1a" in problem["rule"]
    assert not await api.workflow_exists(f"expansion-{eid}")
    with api.db.session() as session:
        assert session.exec(select(Process)).all() == []
        written = session.exec(select(AuditEvent).where(AuditEvent.partner_id != "")).all()
        assert written == []  # (the platform's shipped matrix rows are the log's first)


async def test_forbidden_items_refused_at_submission(api: Api) -> None:
    """E-5.2, E-6.3, E-8.3: forbidden kinds and unbounded permissions refused before any
    workflow starts, each named by field and rule."""
    acme = await api.partner("acme")
    eid = unique("forbidden")
    body = proposal_body(
        id=eid,
        requested_capabilities=[
            {"name": "dump", "kind": "raw_data_access"},
            {"name": "all", "kind": "read_only", "permissions": ["*:read"]},
        ],
        integrations=[{"name": "db", "kind": "direct_db_access"}],
    )
    resp = await api.http.post("/v1/expansions", json=body, headers=acme)
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["rule"] == "E-5.2, E-6.3, E-8.3"
    assert set(problem["errors"]) == {
        "requested_capabilities.0.kind",
        "requested_capabilities.1.permissions.0",
        "integrations.0.kind",
    }
    assert not await api.workflow_exists(f"expansion-{eid}")


async def test_only_partners_submit_expansions(api: Api) -> None:
    resp = await api.http.post("/v1/expansions", json=proposal_body(), headers=api.token("CGB"))
    assert resp.status_code == 403


async def test_submitted_expansion_runs_and_is_visible(api: Api) -> None:
    """P-1: the same proposal under the same id twice -> the same run; E-12.1: the stage shows
    in the API and the search attributes; P-6: another partner gets 404."""
    acme = await api.partner("acme")
    globex = await api.partner("globex")
    eid = unique("thin")  # one dev server serves every test: ids must not collide
    wid = f"expansion-{eid}"
    body = proposal_body(id=eid)
    first = await api.http.post("/v1/expansions", json=body, headers=acme)
    assert first.status_code == 202, first.text
    answered = first.json()  # P-8: answered once the reviews are open
    assert (answered["id"], answered["workflow_id"]) == (eid, wid)
    assert (answered["stage"], answered["step"]) == ("Evaluation", "reviews")
    assert first.headers["Location"] == f"/v1/expansions/{eid}"
    assert "Retry-After" not in first.headers
    handle = api.env.client.get_workflow_handle(wid)
    run_id = (await handle.describe()).run_id

    again = await api.http.post("/v1/expansions", json=body, headers=acme)
    assert again.status_code == 202
    assert again.json()["workflow_id"] == wid
    assert (await handle.describe()).run_id == run_id

    changed = await api.http.post(
        "/v1/expansions", json={**body, "description": "something else"}, headers=acme
    )
    assert changed.status_code == 409
    stolen = await api.http.post("/v1/expansions", json=body, headers=globex)
    assert stolen.status_code == 409
    assert "acme" not in stolen.text

    resp = await api.http.get(f"/v1/expansions/{eid}", headers=acme)
    assert resp.status_code == 200, resp.text
    state = resp.json()
    assert (state["stage"], state["step"], state["status"]) == ("Evaluation", "reviews", "active")
    assert {a["actor"] for a in state["awaiting"]} == {"TSC", "SCO", "ERC", "CGB"}

    assert (await api.http.get(f"/v1/expansions/{eid}", headers=globex)).status_code == 404
    assert (await api.http.get("/v1/expansions/nope", headers=acme)).status_code == 404
    assert (
        await api.http.get(f"/v1/expansions/{eid}", headers=api.token("ops"))
    ).status_code == 200

    listed = (await api.http.get("/v1/expansions", headers=acme)).json()
    assert [e["id"] for e in listed] == [eid]
    assert (await api.http.get("/v1/expansions", headers=globex)).json() == []

    desc = await handle.describe()
    attrs = {pair.key.name: pair.value for pair in desc.typed_search_attributes}
    assert {attrs["KwanusPartnerId"], attrs["KwanusProcess"], attrs["KwanusStage"]} == {
        "acme",
        "expansion",
        "Evaluation",
    }
    assert attrs["KwanusNextDeadline"] is not None
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "Stage: **Evaluation**" in metadata.current_details
    assert "TSC (review)" in metadata.current_details
    summary = await desc.static_summary()
    assert summary is not None and eid in summary and "acme" in summary

    async def found() -> list[str]:
        query = "KwanusPartnerId='acme' AND KwanusStage='Evaluation'"
        return [wf.id async for wf in api.env.client.list_workflows(query)]

    assert wid in await eventually(found)

    with api.db.session() as session:
        events = session.exec(select(AuditEvent).where(AuditEvent.workflow_id == wid)).all()
    assert [e.event for e in events] == ["submitted", "stage_changed", "window_opened"]
    await handle.terminate("test over")


async def test_health(api: Api) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


# --- the policy document (P-5) --------------------------------------------------------------


async def test_policy_versions_and_running_workflows_keep_theirs(api: Api) -> None:
    """P-5: a new policy version applies to processes started after it; a running one keeps
    the version it started with. Loosening a floor is refused with the rule (M-6.2)."""
    acme = await api.partner("acme")
    cgb = api.token("CGB")
    current = (await api.http.get("/v1/policy", headers=acme)).json()
    assert current["version"] == 1

    before = unique("p5-before")
    resp = await api.http.post("/v1/expansions", json=proposal_body(id=before), headers=acme)
    assert resp.status_code == 202

    content = {k: v for k, v in current.items() if k != "version"}
    loosened = {**content, "fallback_min_months": 5}
    refused = await api.http.put("/v1/policy", json=loosened, headers=cgb)
    assert refused.status_code == 422
    assert refused.json()["rule"] == "M-6.2"
    assert "fallback_min_months" in refused.json()["errors"]
    with_version = await api.http.put("/v1/policy", json={**content, "version": 7}, headers=cgb)
    assert with_version.status_code == 422  # the version is the server's
    forbidden = await api.http.put("/v1/policy", json=content, headers=acme)
    assert forbidden.status_code == 403

    tightened = {**content, "fallback_default_months": 18}
    made = await api.http.put("/v1/policy", json=tightened, headers=cgb)
    assert made.status_code == 200, made.text
    assert made.json()["version"] == 2
    assert made.json()["fallback_default_months"] == 18
    assert (await api.http.get("/v1/policy", headers=acme)).json()["version"] == 2

    after = unique("p5-after")
    resp = await api.http.post("/v1/expansions", json=proposal_body(id=after), headers=acme)
    assert resp.status_code == 202

    async def version_of(eid: str) -> int:
        resp = await api.http.get(f"/v1/expansions/{eid}", headers=acme)
        assert resp.status_code == 200
        return int(resp.json()["policy_version"])

    assert await version_of(before) == 1
    assert await version_of(after) == 2
    with api.db.session() as session:
        audit = session.exec(select(AuditEvent).where(AuditEvent.event == "policy_changed")).all()
    assert [(a.actor, a.data["version"]) for a in audit] == [("CGB", 2)]
    for eid in (before, after):
        await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("test over")
