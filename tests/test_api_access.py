"""What a partner may do now, over HTTP on the dev server (issue 17, items 1-3): the access view
the runtime enforces (`GET /v1/partners/{id}/access`), restriction derived from every
remediation and enforced (M-9.2, M-9.3, M-9.1 step 5), and the fallback it lists (M-6.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest

from testdata.factories import partner_body, proposal_body
from tests.apistack import Api, eventually, unique

HELD = ["orders:read", "orders:write"]


async def register(api: Api, partner_id: str) -> dict[str, str]:
    body = partner_body(partner_id, permissions=HELD)
    resp = await api.http.post("/v1/partners", json=body, headers=api.admin)
    assert resp.status_code == 201, resp.text
    return api.token("partner", partner_id)


async def access(api: Api, partner_id: str, headers: dict[str, str]) -> dict[str, Any]:
    resp = await api.http.get(f"/v1/partners/{partner_id}/access", headers=headers)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


async def violation(api: Api, partner_id: str, severity: str) -> str:
    rid = unique(f"rem-{severity}")
    body = {"id": rid, "kind": "data_leak", "severity": severity, "description": "found"}
    resp = await api.http.post(
        f"/v1/partners/{partner_id}/violations", json=body, headers=api.token("SCO")
    )
    assert resp.status_code == 202, resp.text
    return rid


async def remediate(api: Api, rid: str, partner: dict[str, str]) -> None:
    """M-9.1: root cause, plan, fixes (the partner's), SCO's passing re-validation."""
    base = f"/v1/remediations/{rid}"

    async def at_root_cause() -> bool:
        data = (await api.http.get(base, headers=partner)).json()
        return bool(data["step"] == "root_cause")

    await eventually(at_root_cause)
    for path in ("root-cause", "plan", "fixes"):
        resp = await api.http.post(f"{base}/{path}", json={"summary": path}, headers=partner)
        assert resp.status_code == 200, resp.text  # its remediation stays open to it
    resp = await api.http.post(
        f"{base}/review", json={"summary": "ok", "passed": True}, headers=api.token("SCO")
    )
    assert resp.status_code == 200, resp.text

    async def closed() -> bool:
        data = (await api.http.get(base, headers=partner)).json()
        return bool(data["status"] == "completed")

    await eventually(closed)


async def test_restriction_is_derived_from_every_remediation_and_enforced(api: Api) -> None:
    """M-9.2 (Decision): a severe violation restricts the partner at once — its permissions in
    effect are its `:read` ones, it submits no expansion and starts no optional migration (403
    naming M-9.2). A minor remediation closing meanwhile leaves it restricted; the severe one's
    completion restores full access. The access view is the partner's own (and the platform's,
    the bodies', ops'); another partner's is 404."""
    pid = unique("acc")
    partner = await register(api, pid)
    platform = api.token("platform")
    before = await access(api, pid, platform)
    assert (before["status"], before["permissions"]) == ("active", HELD)
    assert before["tier"] == "verified" and before["capabilities"] == ["orders-dashboard"]

    minor = await violation(api, pid, "minor")
    severe = await violation(api, pid, "severe")

    async def restricted() -> dict[str, Any] | None:
        data = await access(api, pid, partner)
        return data if data["status"] == "restricted" else None

    held = await eventually(restricted)
    assert held["permissions"] == ["orders:read"]  # M-9.2: read-only while restricted
    assert [f["rule"] for f in held["restricted_by"]] == ["M-9.2"]
    assert severe in held["restricted_by"][0]["field"]
    profile = (await api.http.get(f"/v1/partners/{pid}", headers=partner)).json()
    assert profile["status"] == "restricted"

    submitted = await api.http.post("/v1/expansions", json=proposal_body(), headers=partner)
    assert submitted.status_code == 403, submitted.text
    assert submitted.json()["rule"] == "M-9.2"
    optional = {
        "partner_id": pid,
        "trigger": "tier_downgrade",  # optional: the partner's own (M-2.2)
        "type": "tier",
        "subtype": "downgrade",
        "target": {"tier": "community"},
    }
    started = await api.http.post("/v1/migrations", json=optional, headers=partner)
    assert started.status_code == 403, started.text
    assert started.json()["rule"] == "M-9.2"

    other = await api.partner(unique("other"))
    assert (await api.http.get(f"/v1/partners/{pid}/access", headers=other)).status_code == 404

    await remediate(api, minor, partner)  # closing a minor one lifts nothing
    still = await access(api, pid, partner)
    assert still["status"] == "restricted" and still["permissions"] == ["orders:read"]

    await remediate(api, severe, partner)

    async def active() -> dict[str, Any] | None:  # the store has its close once it is recorded
        data = await access(api, pid, partner)
        return data if data["status"] == "active" else None

    restored = await eventually(active)
    assert (restored["permissions"], restored["restricted_by"]) == (HELD, [])
    nothing = await api.http.post(
        f"/v1/partners/{pid}/restore", json={"reason": "x"}, headers=api.token("SCO")
    )
    assert nothing.status_code == 409 and nothing.json()["rule"] == "M-9.1"


async def test_the_access_view_lists_a_migrations_fallback_from_its_notice(api: Api) -> None:
    """M-6.1 (Decision) / M-6.3: from the notice the partner's access view lists what the
    migration's fallback keeps — the component and the version it moves off, only the `:read`
    permissions the partner holds, and the fallback's end — read over HTTP."""
    pid = unique("fb")
    partner = await register(api, pid)
    mid = unique("mig")
    body = {
        "id": mid,
        "partner_id": pid,
        "trigger": "api_deprecation",
        "type": "version",
        "subtype": "api",
        "target": {"api_version": "3.0"},
    }
    resp = await api.http.post("/v1/migrations", json=body, headers=api.token("TSC"))
    assert resp.status_code == 202, resp.text

    async def listed() -> dict[str, Any] | None:
        data = await access(api, pid, partner)
        return data if data["fallbacks"] else None

    data = await eventually(listed)
    state = (await api.http.get(f"/v1/migrations/{mid}", headers=partner)).json()
    assert data["fallbacks"] == [
        {
            "migration_id": mid,
            "kind": "api",
            "name": "kwanus",
            "version": "2.1",
            "permissions": ["orders:read"],
            "until": state["fallback"]["until"],
        }
    ]
    assert data["permissions"] == HELD  # the fallback narrows nothing the partner holds now


async def test_a_resubmission_is_answered_from_the_record_never_started_again(api: Api) -> None:
    """P-1 / M-9.2: the same proposal under its id is answered with the process it started —
    from the record, so nothing starts again once Temporal has let the closed run go (here
    deleted, as retention does), restricted partner or not; a new id is refused (403 M-9.2)."""
    pid = unique("p1")
    partner = await register(api, pid)
    eid = unique("exp")
    body = {**proposal_body(), "id": eid}
    assert (await api.http.post("/v1/expansions", json=body, headers=partner)).status_code == 202
    wid = f"expansion-{eid}"

    async def recorded() -> bool:
        resp = await api.http.get(f"/v1/expansions/{eid}", headers=partner)
        return resp.status_code == 200

    await eventually(recorded)
    withdrawn = await api.http.post(
        f"/v1/expansions/{eid}/withdraw", json={"reason": "x"}, headers=partner
    )
    assert withdrawn.status_code == 200, withdrawn.text
    await api.env.client.get_workflow_handle(wid).result()
    first_run = (await api.env.client.get_workflow_handle(wid).describe()).run_id
    await api.env.client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=api.env.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=wid),
        )
    )

    async def gone() -> bool:
        return not await api.workflow_exists(wid)

    await eventually(gone)
    await violation(api, pid, "severe")

    async def restricted() -> bool:
        return bool((await access(api, pid, partner))["status"] == "restricted")

    await eventually(restricted)
    fresh = await api.http.post("/v1/expansions", json=proposal_body(), headers=partner)
    assert fresh.status_code == 403 and fresh.json()["rule"] == "M-9.2"
    again = await api.http.post("/v1/expansions", json=body, headers=partner)
    assert again.status_code == 202 and again.json()["workflow_id"] == wid
    if await api.workflow_exists(wid):  # the dev server may not have dropped it yet
        current = await api.env.client.get_workflow_handle(wid).describe()
        assert current.run_id == first_run  # answered from the record: nothing started


async def test_a_restricted_partner_neither_releases_nor_uses_what_is_not_in_effect(
    api: Api,
) -> None:
    """M-9.2 (Decision): restricted, a partner releases nothing (403 M-9.2: what it holds does
    not grow), and a permission held but not in effect counts as misuse when the platform
    reports it in use (E-7.2): the report starts a forced downgrade."""
    pid = unique("rel")
    partner = await register(api, pid)
    eid = unique("exp")
    base = f"/v1/expansions/{eid}"
    created = await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=partner)
    assert created.status_code == 202, created.text
    await violation(api, pid, "severe")

    async def restricted() -> bool:
        data = await access(api, pid, partner)
        return bool(data["status"] == "restricted" and data["permissions"] == ["orders:read"])

    await eventually(restricted)
    release = {
        "version": "1.2.0",
        "migration_guide": "g",
        "fallback_behaviour": "f",
        "compatibility": [{"kind": "runtime", "name": "kwanus-runtime", "version": "3.0"}],
    }
    refused = await api.http.post(f"{base}/release", json=release, headers=partner)
    assert refused.status_code == 403 and refused.json()["rule"] == "M-9.2"
    assert (await access(api, pid, partner))["capabilities"] == ["orders-dashboard"]

    end = datetime.now(UTC) - timedelta(hours=1)
    report = {
        "period_start": (end - timedelta(days=7)).isoformat(),
        "period_end": end.isoformat(),
        "workflow_success_rate": 0.999,
        "api_error_rate": 0.001,
        "permission_usage": {"orders:write": 500},
    }
    resp = await api.http.post(
        f"/v1/partners/{pid}/telemetry", json=report, headers=api.token("platform")
    )
    assert resp.status_code == 201, resp.text
    downgrade = resp.json()["downgrade"]
    assert downgrade is not None and downgrade["trigger"] == "security_violation"
    assert any("orders:write" in f["message"] for f in downgrade["findings"])
    await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("test over")
