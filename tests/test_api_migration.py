"""Migrations through the HTTP API on the dev server: start, notice to rollout, refusals by rule,
decline only when optional, and the run visible as `KwanusProcess='migration'`."""

from __future__ import annotations

from typing import Any

from store.migrate import shipped_matrix
from testdata.factories import MANIFEST, MIGRATION_DOCS, MIGRATION_IMPLEMENTATION, MIGRATION_PLAN
from tests.apistack import Api, eventually, unique

TARGET = {"os_version": "5.0", "api_version": "3.0"}


def os_move(mid: str) -> dict[str, Any]:
    """TSC's migration `mid` of acme to OS 5.0 and API 3.0."""
    return {
        "id": mid,
        "partner_id": "acme",
        "trigger": "os_major_version",
        "type": "version",
        "subtype": "os",
        "target": TARGET,
    }


async def test_migration_from_notice_to_rollout_over_http(api: Api) -> None:
    """M-4.1 to M-4.5 over HTTP with real tokens; the run is listed by `KwanusProcess`."""
    acme = await api.partner("acme")
    tsc = api.token("TSC")
    mid = unique("mig")
    body = os_move(mid)
    resp = await api.http.post("/v1/migrations", json=body, headers=tsc)
    assert resp.status_code == 202, resp.text
    again = await api.http.post("/v1/migrations", json=body, headers=tsc)
    assert again.status_code == 202 and again.json()["workflow_id"] == f"migration-{mid}"
    base = f"/v1/migrations/{mid}"

    async def at(step: str | None, stage: str | None = None) -> dict[str, Any] | None:
        data: dict[str, Any] = (await api.http.get(base, headers=acme)).json()
        ok = data["step"] == step and (stage is None or data["stage"] == stage)
        return data if ok else None

    state = await eventually(lambda: at("plan"))
    assert state["fallback"]["active"] and state["fallback"]["until"]
    plan = {"strategy": "s", "compatibility_plan": "c", "testing_plan": "t", "rollback_plan": "r"}
    assert (await api.http.post(f"{base}/plan", json=plan, headers=acme)).status_code == 200
    await eventually(lambda: at("implementation"))
    report = {"development": "d", "testing": "t", "documentation": "doc", "manifest": MANIFEST}
    resp = await api.http.post(f"{base}/implementation", json=report, headers=acme)
    assert resp.status_code == 200
    await eventually(lambda: at("documentation"))
    docs = {k: v for k, v in MIGRATION_DOCS.items() if k != "permission_changes"}
    incomplete = await api.http.post(f"{base}/documentation", json=docs, headers=acme)
    assert incomplete.status_code == 422 and incomplete.json()["rule"] == "M-7.1"
    assert set(incomplete.json()["errors"]) == {"permission_changes"}
    docs["permission_changes"] = MIGRATION_DOCS["permission_changes"]
    assert (
        await api.http.post(f"{base}/documentation", json=docs, headers=acme)
    ).status_code == 200
    state = await eventually(lambda: at("rollout", "Rollout"))
    assert all(v["passed"] for v in state["validation"].values())
    unversioned = await api.http.post(f"{base}/rollout", json={}, headers=acme)
    assert unversioned.status_code == 422 and unversioned.json()["rule"] == "M-5.2"
    history = (await api.http.get("/v1/compatibility-matrix/history", headers=acme)).json()
    os_42 = {"kind": "os", "name": "kwanus", "version": "4.2"}
    retire = {**os_42, "status": "deprecated"}  # a partner's rollout never moves a platform row
    rollout = {"version": "5.0.0", "compatibility": [retire]}
    resp = await api.http.post(f"{base}/rollout", json=rollout, headers=acme)
    assert resp.status_code == 422 and "compatibility.0.status" in resp.json()["errors"]
    unlisted = {"version": "5.0.0", "compatibility": [{**os_42, "version": "1.0"}]}
    resp = await api.http.post(f"{base}/rollout", json=unlisted, headers=acme)
    assert resp.status_code == 422 and resp.json()["rule"] == "E-9.2"  # E-9.2: nothing sent
    moved = {"kind": "os", "name": "kwanus", "version": "5.0"}
    rollout = {"version": "5.0.0", "compatibility": [moved]}
    assert (await api.http.post(f"{base}/rollout", json=rollout, headers=acme)).status_code == 200
    state = await eventually(lambda: at(None, "Monitoring"))
    assert state["fallback"]["active"]
    # M-5.1 / E-9.2: the partner's declared compatibility, not the platform's rows
    assert (await api.http.get("/v1/compatibility-matrix/history", headers=acme)).json() == history
    declared = (await api.http.get("/v1/partners/acme", headers=acme)).json()["compatibility"]
    assert [(c["kind"], c["version"], c["source"]) for c in declared] == [
        ("os", "5.0", f"migration-{mid}")
    ]

    async def listed() -> list[str]:
        query = "KwanusProcess='migration' AND KwanusPartnerId='acme'"
        return [wf.id async for wf in api.env.client.list_workflows(query)]

    assert f"migration-{mid}" in await eventually(listed)
    mine = (await api.http.get("/v1/migrations", headers=acme)).json()
    assert mid in [m["id"] for m in mine]
    await api.env.client.get_workflow_handle(f"migration-{mid}").terminate("test over")


async def test_documents_that_are_no_references_are_refused_over_http(api: Api) -> None:
    """M-7.1, E-2.6: an implementation report and the documentation whose documents are not
    references, or repeat another's, are 422 naming every bad field — nothing sent to the run
    (its history does not grow), the step still awaited."""
    acme = await api.partner("acme")
    mid = unique("mig-docs")
    body = os_move(mid)
    assert (await api.http.post("/v1/migrations", json=body, headers=api.token("TSC"))).is_success
    base = f"/v1/migrations/{mid}"
    handle = api.env.client.get_workflow_handle(f"migration-{mid}")

    async def at(step: str) -> dict[str, Any] | None:
        data: dict[str, Any] = (await api.http.get(base, headers=acme)).json()
        return data if data["step"] == step else None

    assert await eventually(lambda: at("plan"))
    assert (await api.http.post(f"{base}/plan", json=MIGRATION_PLAN, headers=acme)).is_success
    assert await eventually(lambda: at("implementation"))
    before = len((await handle.fetch_history()).events)
    report = {
        "development": "PR-1",
        "testing": "PR-1",
        "documentation": "/etc/passwd",
        "manifest": MANIFEST,
    }
    resp = await api.http.post(f"{base}/implementation", json=report, headers=acme)
    assert resp.status_code == 422 and resp.json()["rule"] == "E-2.6", resp.text
    errors = resp.json()["errors"]
    assert set(errors) == {"testing", "documentation"}
    # refused by the API's request form (the workflow's validator words its detail otherwise)
    assert resp.json()["detail"] == "invalid request: documentation, testing"
    assert "the same reference as development" in errors["testing"]
    assert errors["documentation"].startswith("not a reference")
    assert len((await handle.fetch_history()).events) == before
    state = await at("implementation")
    assert state is not None and state["implementation"] is None
    assert (
        await api.http.post(f"{base}/implementation", json=MIGRATION_IMPLEMENTATION, headers=acme)
    ).is_success

    assert await eventually(lambda: at("documentation"))
    before = len((await handle.fetch_history()).events)
    docs = {
        **MIGRATION_DOCS,
        "compatibility_notes": MIGRATION_DOCS["migration_guide"],
        "version_notes": "see the wiki",
        "tutorials": " " + MIGRATION_DOCS["migration_guide"],  # optional, judged all the same
    }
    resp = await api.http.post(f"{base}/documentation", json=docs, headers=acme)
    assert resp.status_code == 422 and resp.json()["rule"] == "M-7.1", resp.text
    errors = resp.json()["errors"]
    assert set(errors) == {"compatibility_notes", "version_notes", "tutorials"}
    assert resp.json()["detail"].startswith("invalid request: ")
    assert errors["compatibility_notes"] == (
        "the same reference as migration_guide: each document is its own (M-7.1)"
    )
    assert errors["version_notes"].startswith("not a reference")
    assert len((await handle.fetch_history()).events) == before
    state = await at("documentation")
    assert state is not None and state["documentation"] is None
    await handle.terminate("test over")


async def test_migration_refusals_by_rule(api: Api) -> None:
    """M-6.2 a 5-month fallback refused; M-3.1 a wrong subtype; M-3.2 an ungoverned permission
    expansion; M-2.2 a partner starts only optional migrations, on itself (P-6)."""
    acme = await api.partner("acme")
    await api.partner("globex")
    tsc = api.token("TSC")
    base = {"partner_id": "acme", "trigger": "api_deprecation", "type": "version", "subtype": "api"}

    async def start(headers: dict[str, str], **changes: Any) -> Any:
        return await api.http.post("/v1/migrations", json={**base, **changes}, headers=headers)

    short = await start(tsc, fallback_months=5)
    assert short.status_code == 422 and short.json()["rule"] == "M-6.2"
    assert (await start(tsc, subtype="upgrade")).json()["rule"] == "M-3.1"
    ungoverned = await start(
        tsc, trigger="capability_expansion", type="permission", subtype="governed_expansion"
    )
    assert ungoverned.json()["rule"] == "M-3.2"
    assert (await start(acme)).status_code == 403  # a required trigger: not the partner's
    assert (
        await start(
            acme, partner_id="globex", trigger="tier_upgrade", type="tier", subtype="upgrade"
        )
    ).status_code == 404
    assert (await start(api.token("ERC"))).status_code == 403


async def test_decline_over_http(api: Api) -> None:
    """M-2.2 optional: declined; M-2.3 forced: refused with the rule."""
    acme = await api.partner("acme")
    sco = api.token("SCO")
    forced, optional = unique("forced"), unique("optional")
    ok = await api.http.post(
        "/v1/migrations",
        json={
            "id": forced,
            "partner_id": "acme",
            "trigger": "security_violation",
            "type": "permission",
            "subtype": "reduction",
        },
        headers=sco,
    )
    assert ok.status_code == 202
    mine = await api.http.post(
        "/v1/migrations",
        json={
            "id": optional,
            "partner_id": "acme",
            "trigger": "tier_downgrade",
            "type": "tier",
            "subtype": "downgrade",
            "target": {"tier": "community"},
        },
        headers=acme,
    )
    assert mine.status_code == 202

    async def planning(mid: str) -> bool:
        data = (await api.http.get(f"/v1/migrations/{mid}", headers=acme)).json()
        return bool(data["step"] == "plan")

    assert await eventually(lambda: planning(forced))
    refused = await api.http.post(f"/v1/migrations/{forced}/decline", headers=acme)
    assert refused.status_code == 422 and refused.json()["rule"] == "M-2.3"
    assert await eventually(lambda: planning(optional))
    declined = await api.http.post(
        f"/v1/migrations/{optional}/decline", json={"reason": "not now"}, headers=acme
    )
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    await api.env.client.get_workflow_handle(f"migration-{forced}").terminate("test over")


async def test_tsc_changes_the_matrix_with_a_reason(api: Api) -> None:
    """E-9.1 / M-5.1: TSC changes entries directly, never silently (a reason, an audit event, a
    new matrix version); nobody else may."""
    acme = await api.partner("acme")
    tsc = api.token("TSC")
    entry = {"kind": "runtime", "name": "kwanus-runtime", "version": "2.0", "status": "retired"}
    body = {"entries": [entry], "reason": "end of life"}
    for who in (acme, api.token("SCO"), api.token("admin")):
        assert (
            await api.http.put("/v1/compatibility-matrix", json=body, headers=who)
        ).status_code == 403
    no_reason = await api.http.put(
        "/v1/compatibility-matrix", json={"entries": [entry]}, headers=tsc
    )
    assert no_reason.status_code == 422
    resp = await api.http.put("/v1/compatibility-matrix", json=body, headers=tsc)
    assert resp.status_code == 200, resp.text
    matrix = resp.json()
    version = len(shipped_matrix()) + 1  # after the shipped platform rows
    assert matrix["version"] == version and entry in matrix["entries"]
    history = (await api.http.get("/v1/compatibility-matrix/history", headers=acme)).json()
    assert history[0]["actor"] == "TSC"
    assert history[0]["audit_key"] == f"compatibility-matrix:v{version}"
