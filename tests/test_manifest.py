"""The partner manifest (issue 20) through the HTTP API: registered with the partner, shown with
its history, shipped with a migration's implementation, inspected by the four validation checks
(M-8.1 Decision, M-8.2) — each failure named and remediated — and the partner's own once the
migration completes (M-4.7)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from policy.grants import Grant, GrantType, Holdings
from policy.manifest import Manifest
from policy.validation import check_against_manifest
from store.db import Database
from testdata.factories import (
    IMPLEMENTATION,
    MIGRATION_DOCS,
    MIGRATION_PLAN,
    manifest,
    partner_body,
)
from tests.apistack import Api, eventually, serving, unique

# The shipped matrix lists these platform workflow rows (store/platform-matrix.json).
SYNC = {
    "name": "order-sync",
    "trigger": "order.created@1.0",
    "handler": "notify.partner@1.0",
    "permissions": ["orders:read"],
}
SYNC_GRANT = {"type": "integration", "name": "order-sync", "kind": "workflow"}
API_MOVE = {"trigger": "api_deprecation", "type": "version", "subtype": "api"}


@pytest.fixture
async def ts_api(ts_env: WorkflowEnvironment, db: Database) -> AsyncIterator[Api]:
    """The API and a worker on the time-skipping server: a migration can reach completion."""
    async with serving(ts_env, db) as stack:
        yield stack


async def migrate(api: Api, partner: str, target: dict[str, str], **kind: str) -> str:
    """TSC starts a migration of `partner` (an API deprecation unless `kind` says otherwise);
    it answers at its plan (P-8)."""
    mid = unique("mig")
    body = {"id": mid, "partner_id": partner, **(kind or API_MOVE), "target": target}
    resp = await api.http.post("/v1/migrations", json=body, headers=api.token("TSC"))
    assert resp.status_code == 202 and resp.json()["step"] == "plan", resp.text
    return mid


async def ship(
    api: Api, mid: str, who: dict[str, str], shipped: dict[str, Any], *, between: Any = None
) -> dict[str, Any]:
    """The partner's plan, implementation carrying `shipped`, and documentation; the answer
    of the documentation, at rest after validation (P-8): the rollout open, or a remediation."""
    base = f"/v1/migrations/{mid}"
    resp = await api.http.post(f"{base}/plan", json=MIGRATION_PLAN, headers=who)
    assert resp.status_code == 200, resp.text
    body = {**IMPLEMENTATION, "manifest": shipped}
    resp = await api.http.post(f"{base}/implementation", json=body, headers=who)
    assert resp.status_code == 200 and resp.json()["step"] == "documentation", resp.text
    if between is not None:
        await between()
    resp = await api.http.post(f"{base}/documentation", json=MIGRATION_DOCS, headers=who)
    assert resp.status_code == 200, resp.text
    state: dict[str, Any] = resp.json()
    assert state["step"] in ("rollout", "remediation"), state
    return state


async def reported(api: Api, start: datetime, end: datetime, **fields: Any) -> None:
    """One healthy report of acme's telemetry by the platform (E-7.1), with `fields`."""
    report = {
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "workflow_success_rate": 0.999,
        "api_error_rate": 0.001,
        **fields,
    }
    resp = await api.http.post(
        "/v1/partners/acme/telemetry", json=report, headers=api.token("platform")
    )
    assert resp.status_code == 201, resp.text


async def past_the_fallback(api: Api, until: datetime, **fields: Any) -> None:
    """The platform's report of the fallback's last week (healthy, with `fields`), and time
    past the fallback's end."""
    await reported(
        api,
        until - timedelta(days=7),
        until - timedelta(hours=1),
        **{"permission_usage": {"orders:read": 5}, **fields},
    )
    await api.env.sleep(until - await api.env.get_current_time() + timedelta(days=1))


async def state_when(
    api: Api, mid: str, who: dict[str, str], done: Any, within: float = 60
) -> dict[str, Any]:
    """The migration's state once `done(state)` holds."""

    async def check() -> dict[str, Any] | None:
        got: dict[str, Any] = (await api.http.get(f"/v1/migrations/{mid}", headers=who)).json()
        return got if done(got) else None

    state = await eventually(check, within=within)
    assert state is not None, f"migration {mid} never got there"
    return state


async def completes(api: Api, mid: str, who: dict[str, str], until: datetime) -> None:
    """Healthy telemetry up to the fallback's end (M-4.6), time past it: the migration
    completes (M-4.7)."""
    await past_the_fallback(api, until)
    await state_when(api, mid, who, lambda s: s["status"] == "completed")


async def enforced(api: Api, mid: str, who: dict[str, str]) -> dict[str, Any]:
    """A forced migration's window (30 days) ends with the partner not having acted: its
    target applies (M-2.3) and it monitors; its state then."""
    await api.env.sleep(timedelta(days=31))
    state = await state_when(api, mid, who, lambda s: s["stage"] == "Monitoring")
    assert state["decision"]["outcome"] == "enforced"
    return state


async def judged_at_the_end(
    api: Api, mid: str, who: dict[str, str], until: datetime
) -> dict[str, Any]:
    """The migration's state once a monitoring check has judged the fallback's end."""
    return await state_when(
        api,
        mid,
        who,
        lambda s: (
            bool(s["monitoring"]) and datetime.fromisoformat(s["monitoring"][-1]["at"]) >= until
        ),
    )


def failures(state: dict[str, Any]) -> dict[str, list[tuple[str, str, str]]]:
    """Each failed check's findings: (field, rule, message)."""
    return {
        name: [(f["field"], f["rule"], f["message"]) for f in check["findings"]]
        for name, check in state["validation"].items()
        if not check["passed"]
    }


async def remediation_of(api: Api, mid: str, who: dict[str, str]) -> dict[str, Any]:
    resp = await api.http.get(f"/v1/remediations/{mid}-v1", headers=who)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_a_manifest_still_on_the_deprecated_api_fails_the_api_contract(
    ts_api: Api,
) -> None:
    """M-8.1 (Decision) / M-5.1: TSC deprecates API 2.1 and moves partners to 3.0; a partner
    whose manifest still names 2.1 fails the API-contract check — not the target, and
    deprecated — and a remediation opens naming it (M-8.2, M-9.1)."""
    api = ts_api
    acme = await api.partner("acme")
    deprecate = {
        "reason": "2.1 is deprecated",
        "entries": [{"kind": "api", "name": "kwanus", "version": "2.1", "status": "deprecated"}],
    }
    resp = await api.http.put("/v1/compatibility-matrix", json=deprecate, headers=api.token("TSC"))
    assert resp.status_code == 200, resp.text
    mid = await migrate(api, "acme", {"api_version": "3.0"})
    state = await ship(api, mid, acme, manifest(api_version="2.1"))
    assert state["step"] == "remediation"
    assert failures(state) == {
        "api_contract": [
            ("manifest.api_version", "M-8.1", "api 2.1: the migration moves to 3.0"),
            ("manifest.api_version", "M-5.1", "api 2.1 is deprecated"),
        ]
    }
    remediation = await remediation_of(api, mid, acme)
    assert "api 2.1 is deprecated" in remediation["description"]
    assert remediation["kind"] == "validation_failed"


async def test_an_ungoverned_workflow_fails_the_workflow_check(ts_api: Api) -> None:
    """M-8.2 / E-5.2: a workflow no approved expansion granted is ungoverned; its trigger and
    handler must be versioned platform rows (M-5.2) supported in the matrix (M-5.1), its
    permissions within the manifest's."""
    api = ts_api
    acme = await api.partner("acme")
    mid = await migrate(api, "acme", {"api_version": "3.0"})
    unversioned = {**SYNC, "name": "stock-sync", "handler": "notify.partner"}
    unlisted = {**SYNC, "name": "tax-sync", "trigger": "order.refunded@1.0"}
    wider = {**SYNC, "name": "pay-sync", "permissions": ["payments:read"]}
    shipped = manifest(workflows=[SYNC, unversioned, unlisted, wider])
    state = await ship(api, mid, acme, shipped)
    found = failures(state)
    assert set(found) == {"workflow"}
    assert [(f, r) for f, r, _ in found["workflow"]] == [
        ("manifest.workflows.0.name", "M-8.2"),
        ("manifest.workflows.1.name", "M-8.2"),
        ("manifest.workflows.1.handler", "M-5.2"),
        ("manifest.workflows.2.name", "M-8.2"),
        ("manifest.workflows.2.trigger", "M-5.1"),
        ("manifest.workflows.3.name", "M-8.2"),
        ("manifest.workflows.3.permissions.0", "M-8.1"),
    ]
    assert found["workflow"][0][2] == (
        "workflow order-sync is ungoverned: no approved expansion granted it"
    )
    assert "order-sync is ungoverned" in (await remediation_of(api, mid, acme))["description"]


async def test_unbounded_and_above_tier_permissions_fail_the_permission_check(
    ts_api: Api,
) -> None:
    """M-8.2: a `*` permission is unbounded; M-8.1: a permission the tier the partner will hold
    does not allow, or that it is not granted, fails the permission-boundary check."""
    api = ts_api
    acme = await api.partner("acme")
    mid = await migrate(api, "acme", {"api_version": "3.0"})
    shipped = manifest(permissions=["orders:read", "orders:*", "orders:admin", "orders:write"])
    state = await ship(api, mid, acme, shipped)
    assert failures(state) == {
        "permission_boundary": [
            ("manifest.permissions.1", "M-8.2", "orders:* is unbounded"),
            (
                "manifest.permissions.2",
                "M-8.1",
                "orders:admin exceeds tier verified (actions: read, write)",
            ),
            (
                "manifest.permissions.2",
                "M-8.1",
                "orders:admin is not granted: the partner will not hold it after the migration",
            ),
            (
                "manifest.permissions.3",
                "M-8.1",
                "orders:write is not granted: the partner will not hold it after the migration",
            ),
        ]
    }


async def test_an_unlisted_or_deprecated_runtime_fails_the_runtime_check(ts_api: Api) -> None:
    """E-9.2: a runtime the matrix does not list is fragmentation; M-8.2: a deprecated one is
    incompatible — it no longer passes."""
    api = ts_api
    acme = await api.partner("acme")
    mid = await migrate(api, "acme", {"api_version": "3.0"})
    state = await ship(
        api, mid, acme, manifest(runtime={"name": "kwanus-runtime", "version": "9.9"})
    )
    assert failures(state) == {
        "runtime_compatibility": [
            (
                "manifest.runtime",
                "E-9.2",
                "runtime kwanus-runtime 9.9 is unlisted: runtime fragmentation",
            )
        ]
    }
    beta = await api.partner("beta")
    old = {"kind": "runtime", "name": "kwanus-runtime", "version": "3.0", "status": "deprecated"}
    resp = await api.http.put(
        "/v1/compatibility-matrix",
        json={"reason": "3.0 is going", "entries": [old]},
        headers=api.token("TSC"),
    )
    assert resp.status_code == 200, resp.text
    mid = await migrate(api, "beta", {"api_version": "3.0"})
    state = await ship(api, mid, beta, manifest())
    assert failures(state) == {
        "runtime_compatibility": [
            ("manifest.runtime", "M-8.2", "runtime kwanus-runtime 3.0 is deprecated")
        ]
    }


async def test_a_clean_manifest_passes_and_is_the_partners_at_completion(ts_api: Api) -> None:
    """M-8.1 / M-4.7: a partner registered with a governed workflow (issue 20: governed by that
    registration) ships a clean manifest on the target: every check passes, and at completion
    the manifest is the partner's — version 2, from the migration — with its versions."""
    api = ts_api
    registered = manifest(os_version="4.2", api_version="2.1", workflows=[SYNC])
    body = partner_body("acme", grants=[{**SYNC_GRANT, "permissions": []}], manifest=registered)
    resp = await api.http.post("/v1/partners", json=body, headers=api.admin)
    assert resp.status_code == 201, resp.text
    acme = api.token("partner", "acme")
    shown = (await api.http.get("/v1/partners/acme/manifest", headers=acme)).json()
    assert (shown["version"], shown["source"]) == (1, "registration")
    assert shown["manifest"] == registered
    mid = await migrate(
        api,
        "acme",
        {"os_version": "5.0", "api_version": "3.0"},
        **{**API_MOVE, "fallback_months": 6},
    )
    shipped = manifest(workflows=[SYNC])
    state = await ship(api, mid, acme, shipped)
    assert state["step"] == "rollout" and failures(state) == {}, state["validation"]
    assert state["manifest"] == shipped
    resp = await api.http.post(
        f"/v1/migrations/{mid}/rollout", json={"version": "3.0.0"}, headers=acme
    )
    assert resp.status_code == 200 and resp.json()["stage"] == "Monitoring", resp.text
    until = datetime.fromisoformat(resp.json()["fallback"]["until"])
    await completes(api, mid, acme, until)
    shown = (await api.http.get("/v1/partners/acme/manifest", headers=acme)).json()
    assert (shown["version"], shown["source"]) == (2, f"migration-{mid}")
    assert shown["manifest"] == shipped
    assert [v["version"] for v in shown["history"]] == [2, 1]
    profile = (await api.http.get("/v1/partners/acme", headers=acme)).json()
    assert (profile["os_version"], profile["api_version"]) == ("5.0", "3.0")


async def test_calls_to_the_version_moved_off_fail_once_the_partner_says_it_moved(
    api: Api,
) -> None:
    """M-8.1 (Decision): the platform's telemetry since the implementation shows calls to the
    API version the migration moves off — the manifest says 3.0, the traffic says 2.1 — so the
    API-contract check fails; reports from before the implementation do not count."""
    acme = await api.partner("acme")
    await api.platform_reports("acme", {"orders:read": 5})  # 2.1 calls, weeks before
    mid = await migrate(api, "acme", {"api_version": "3.0"})

    async def still_on_21() -> None:
        """A report begun after the implementation (its answer is in), ended before the
        fixes below."""
        now = datetime.now(UTC)
        calls = {"api:2.1": 40, "api:3.0": 2}
        await reported(api, now, now + timedelta(milliseconds=1), calls_by_version=calls)

    state = await ship(api, mid, acme, manifest(os_version="4.2"), between=still_on_21)
    found = failures(state)
    assert list(found) == ["api_contract"]
    [(field, rule, message)] = found["api_contract"]
    assert (field, rule) == ("telemetry.calls_by_version", "M-8.1")
    assert message.startswith("the platform saw 40 calls to api 2.1, which the migration moves off")
    # Remediated (M-9.1): the fixes say it has moved now; calls before them no longer count,
    # and the checks pass on validation again.
    rem = f"/v1/remediations/{mid}-v1"
    for step in ("root-cause", "plan", "fixes"):
        resp = await api.http.post(f"{rem}/{step}", json={"summary": step}, headers=acme)
        assert resp.status_code == 200, resp.text
    passed = {"summary": "no 2.1 calls since the fix", "passed": True}
    resp = await api.http.post(f"{rem}/review", json=passed, headers=api.token("SCO"))
    assert resp.status_code == 200, resp.text

    async def revalidated() -> dict[str, Any] | None:
        got = (await api.http.get(f"/v1/migrations/{mid}", headers=acme)).json()
        return got if got["step"] == "rollout" else None

    state = await eventually(revalidated, within=60)
    assert state, json.dumps((await api.http.get(f"/v1/migrations/{mid}", headers=acme)).json())
    assert failures(state) == {}, state
    assert state["moved_at"] > state["implementation"]["at"], state
    await api.env.client.get_workflow_handle(f"migration-{mid}").terminate("test over")


async def test_an_implementation_without_its_manifest_is_refused(api: Api) -> None:
    """M-8.1 / P-2: a migration's implementation carries the manifest; without one it is 422
    naming `manifest`, and nothing is taken (the step is still awaited)."""
    acme = await api.partner("acme")
    mid = await migrate(api, "acme", {"api_version": "3.0"})
    base = f"/v1/migrations/{mid}"
    assert (await api.http.post(f"{base}/plan", json=MIGRATION_PLAN, headers=acme)).is_success
    resp = await api.http.post(f"{base}/implementation", json=IMPLEMENTATION, headers=acme)
    assert resp.status_code == 422 and "manifest" in resp.json()["errors"], resp.text
    state = (await api.http.get(base, headers=acme)).json()
    assert state["step"] == "implementation" and state["implementation"] is None
    await api.env.client.get_workflow_handle(f"migration-{mid}").terminate("test over")


async def test_a_registered_manifest_is_governed_by_its_registration(api: Api) -> None:
    """Issue 20 / M-8.2 / E-5.2: an admin registers a partner's manifest with it; a workflow
    no grant of the registration governs, a `*` permission, or one not granted is refused
    (422, each named, nothing stored). A partner registered without one has the derived
    manifest; another partner's manifest is 404 (P-6)."""
    body = partner_body(
        "acme",
        manifest=manifest(
            os_version="4.2",
            api_version="2.1",
            workflows=[SYNC],
            permissions=["orders:read", "orders:*", "stock:read"],
        ),
    )
    resp = await api.http.post("/v1/partners", json=body, headers=api.admin)
    assert resp.status_code == 422, resp.text
    errors = resp.json()["errors"]
    assert set(errors) == {
        "manifest.workflows.0.name",
        "manifest.permissions.1",
        "manifest.permissions.2",
    }, errors
    assert "M-8.2" in errors["manifest.workflows.0.name"]
    other = partner_body("acme", manifest=manifest())  # 5.0 / 3.0 against 4.2 / 2.1
    resp = await api.http.post("/v1/partners", json=other, headers=api.admin)
    assert resp.status_code == 422, resp.text
    assert set(resp.json()["errors"]) == {"manifest.os_version", "manifest.api_version"}
    assert (await api.http.get("/v1/partners/acme", headers=api.admin)).status_code == 404
    acme = await api.partner("acme")
    shown = (await api.http.get("/v1/partners/acme/manifest", headers=acme)).json()
    assert shown["manifest"] == manifest(os_version="4.2", api_version="2.1")
    beta = await api.partner("beta")
    assert (await api.http.get("/v1/partners/acme/manifest", headers=beta)).status_code == 404


def test_a_workflow_grant_requested_covers_what_the_manifest_workflow_asks() -> None:
    """Issue 20 / M-8.1 at submission: a proposal granting a workflow the partner's manifest
    runs (its grant removed and requested anew, say after a downgrade trimmed what it carried)
    must cover every permission that workflow asks for — held, or requested by the proposal."""
    shipped = Manifest.model_validate(
        manifest(
            permissions=["orders:read", "stock:write"],
            workflows=[{**SYNC, "permissions": ["orders:read", "stock:write"]}],
        )
    )
    held = Holdings(registered=("orders:read",))
    grant = Grant(type=GrantType.INTEGRATION, name="Order-Sync", kind="workflow")
    refused = check_against_manifest([("integrations.0", grant)], shipped, held)
    assert [(f.field, f.rule) for f in refused.findings] == [
        ("integrations.0.permissions", "M-8.1")
    ]
    assert "stock:write" in refused.findings[0].message
    with_it = grant.model_copy(update={"permissions": ("stock:write",)})
    assert check_against_manifest([("integrations.0", with_it)], shipped, held).allowed
    other = grant.model_copy(update={"name": "billing-sync"})  # not a workflow it runs
    assert check_against_manifest([("integrations.0", other)], shipped, held).allowed


async def test_a_manifest_validated_earlier_never_replaces_a_newer_one(ts_api: Api) -> None:
    """M-4.7: two migrations of one partner complete out of the order they were validated in —
    an OS move validated first (still on API 2.1, 12-month fallback), then an API move (on 3.0,
    6 months). The API move completes first and registers its manifest; the OS move's, older,
    completes later and does not bring API 2.1 back: the newer validated manifest stands."""
    api = ts_api
    acme = await api.partner("acme")
    os_move = {"trigger": "os_major_version", "type": "version", "subtype": "os"}
    first = await migrate(api, "acme", {"os_version": "5.0"}, **os_move)
    assert (await ship(api, first, acme, manifest(api_version="2.1")))["step"] == "rollout"
    second = await migrate(
        api, "acme", {"api_version": "3.0"}, **{**API_MOVE, "fallback_months": 6}
    )
    assert (await ship(api, second, acme, manifest()))["step"] == "rollout"
    ends = {}
    for mid in (first, second):
        resp = await api.http.post(
            f"/v1/migrations/{mid}/rollout", json={"version": "5.0.0"}, headers=acme
        )
        assert resp.status_code == 200, resp.text
        ends[mid] = datetime.fromisoformat(resp.json()["fallback"]["until"])
    await completes(api, second, acme, ends[second])
    shown = (await api.http.get("/v1/partners/acme/manifest", headers=acme)).json()
    assert (shown["version"], shown["source"]) == (2, f"migration-{second}")
    await completes(api, first, acme, ends[first])
    shown = (await api.http.get("/v1/partners/acme/manifest", headers=acme)).json()
    assert (shown["version"], shown["manifest"]["api_version"]) == (2, "3.0")
    profile = (await api.http.get("/v1/partners/acme", headers=acme)).json()
    assert (profile["os_version"], profile["api_version"]) == ("5.0", "3.0")
    record = (await api.http.get(f"/v1/migrations/{first}/decision-record", headers=acme)).json()
    lifecycle = [e for e in record["events"] if e["event"] == "lifecycle_updated"]
    assert lifecycle and "manifest_superseded" in lifecycle[0]["data"], lifecycle


async def test_a_workflow_deprecation_reaches_the_partners_whose_manifest_runs_it(
    api: Api,
) -> None:
    """M-2.1 / M-3.1: TSC deprecates the platform workflow `order.created@1.0`; the notice
    starts a workflow-deprecation migration for the partner whose registered manifest runs it
    (its trigger), and none for a partner that does not; the row is deprecated in the matrix."""
    registered = manifest(os_version="4.2", api_version="2.1", workflows=[SYNC])
    body = partner_body("acme", grants=[SYNC_GRANT], manifest=registered)
    assert (await api.http.post("/v1/partners", json=body, headers=api.admin)).is_success
    await api.partner("beta")
    tsc = api.token("TSC")
    notice_id = unique("wf")
    notice = {"id": notice_id, "kind": "workflow", "name": "order.created", "version": "1.0"}
    resp = await api.http.post("/v1/deprecations", json=notice, headers=tsc)
    assert resp.status_code == 202, resp.text

    async def fanned_out() -> dict[str, Any] | None:
        got: dict[str, Any] = (
            await api.http.get(f"/v1/deprecations/{notice_id}", headers=tsc)
        ).json()
        return got if got.get("status") == "completed" else None

    state = await eventually(fanned_out, within=60)
    assert state and state["progress"]["affected"] == 1, state
    acme = api.token("partner", "acme")
    started = (await api.http.get(f"/v1/migrations/{notice_id}.acme", headers=acme)).json()
    assert (started["trigger"], started["subtype"]) == ("workflow_deprecation", "workflow")
    missing = await api.http.get(f"/v1/migrations/{notice_id}.beta", headers=tsc)
    assert missing.status_code == 404
    rows = (await api.http.get("/v1/compatibility-matrix", headers=tsc)).json()["entries"]
    assert {
        "kind": "workflow",
        "name": "order.created",
        "version": "1.0",
        "status": "deprecated",
    } in rows
    await api.env.client.get_workflow_handle(f"migration-{notice_id}.acme").terminate("test over")
