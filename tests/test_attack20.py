"""Attacks on the partner manifest (issue 20, M-8.1 Decision, M-8.2, M-4.7): a manifest that
should not become a partner's, or a migration validated that should not be — each a hole found
by the attack helper, kept as a test through the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from policy.references import check_references
from testdata.factories import (
    IMPLEMENTATION,
    MIGRATION_DOCS,
    MIGRATION_PLAN,
    manifest,
    partner_body,
    proposal_body,
)
from tests.apistack import Api
from tests.test_manifest import (  # noqa: F401  (ts_api: the fixture)
    API_MOVE,
    SYNC,
    SYNC_GRANT,
    completes,
    enforced,
    failures,
    judged_at_the_end,
    migrate,
    past_the_fallback,
    ship,
    ts_api,
)

FORCED = {"trigger": "security_violation", "type": "version", "subtype": "api"}
# What no validation passes: an unbounded permission (M-8.2), an ungoverned workflow (M-8.2)
# and a runtime the matrix does not list (E-9.2) — on the target's versions.
BAD = manifest(
    permissions=["orders:read", "orders:*"],
    workflows=[SYNC],
    runtime={"name": "rogue-runtime", "version": "9.9"},
)


async def validated_on_21_then_deprecated(
    api: Api, acme: dict[str, str], tsc: dict[str, str]
) -> tuple[str, datetime]:
    """Migration B of acme validates a manifest on API 2.1 while 2.1 is supported and rolls
    out; TSC then deprecates 2.1. B's id and its fallback's end."""
    b = await migrate(
        api, "acme", {}, **{"trigger": "runtime_change", "type": "runtime", "subtype": "workflow"}
    )
    state = await ship(api, b, acme, manifest(os_version="4.2", api_version="2.1"))
    assert state["step"] == "rollout", failures(state)
    resp = await api.http.post(
        f"/v1/migrations/{b}/rollout", json={"version": "1.1.0"}, headers=acme
    )
    assert resp.status_code == 200, resp.text
    b_end = datetime.fromisoformat(resp.json()["fallback"]["until"])
    deprecate = {
        "reason": "2.1 is deprecated",
        "entries": [{"kind": "api", "name": "kwanus", "version": "2.1", "status": "deprecated"}],
    }
    resp = await api.http.put("/v1/compatibility-matrix", json=deprecate, headers=tsc)
    assert resp.status_code == 200, resp.text
    return b, b_end


async def registered_with(api: Api, workflow: dict[str, Any]) -> dict[str, Any]:
    """acme registered (admin) with a manifest running `workflow`, governed by its grant: the
    answer's JSON, which must be a 422 — and nothing stored."""
    shipped = manifest(os_version="4.2", api_version="2.1", workflows=[workflow])
    body = partner_body("acme", grants=[{**SYNC_GRANT, "permissions": []}], manifest=shipped)
    resp = await api.http.post("/v1/partners", json=body, headers=api.admin)
    assert resp.status_code == 422, resp.text
    assert (await api.http.get("/v1/partners/acme", headers=api.admin)).status_code == 404
    return dict(resp.json())


async def _completes_healthy(api: Api, mid: str, who: dict[str, str]) -> None:
    """The forced window (30 days) ends; healthy platform telemetry at the fallback's end;
    the run completes (M-4.7)."""
    state = await enforced(api, mid, who)
    await completes(api, mid, who, datetime.fromisoformat(state["fallback"]["until"]))


async def test_a_forced_migration_never_registers_a_manifest_its_validation_did_not_pass(
    ts_api: Api,  # noqa: F811
) -> None:
    """M-4.7 / M-8.1 / M-8.2 / E-9.2: a forced migration's target applies at its window's end
    whatever the partner did (M-2.3) — but the manifest the partner shipped with its
    implementation was never validated (it let the documentation step, and so validation, run
    out). Completion must not register it: no `*` permission, no ungoverned workflow, no
    unlisted runtime becomes the partner's, nor its versions; the registered manifest moves to
    the target instead."""
    api = ts_api
    acme = await api.partner("acme")
    mid = await migrate(api, "acme", {"api_version": "3.0"}, **{**FORCED, "fallback_months": 6})
    base = f"/v1/migrations/{mid}"
    assert (await api.http.post(f"{base}/plan", json=MIGRATION_PLAN, headers=acme)).is_success
    body = {**IMPLEMENTATION, "manifest": BAD}
    resp = await api.http.post(f"{base}/implementation", json=body, headers=acme)
    assert resp.status_code == 200 and resp.json()["step"] == "documentation", resp.text
    # The partner never documents: the forced window (30 days) ends, the target applies.
    await _completes_healthy(api, mid, acme)
    shown = (await api.http.get("/v1/partners/acme/manifest", headers=acme)).json()
    assert shown["manifest"]["permissions"] == ["orders:read"], shown
    assert shown["manifest"]["workflows"] == []
    assert shown["manifest"]["runtime"] == {"name": "kwanus-runtime", "version": "3.0"}
    assert shown["manifest"]["api_version"] == "3.0"  # the target applied
    profile = (await api.http.get("/v1/partners/acme", headers=acme)).json()
    assert profile["runtime"] == {"name": "kwanus-runtime", "version": "3.0"}, profile


async def test_a_failed_validation_of_a_forced_migration_is_not_registered_at_its_end(
    ts_api: Api,  # noqa: F811
) -> None:
    """M-4.7 / M-8.2: the same through validation — the partner documents, validation fails
    on its manifest, the remediation is never done and the forced window ends: the target
    applies, but the manifest validation refused is not the partner's."""
    api = ts_api
    acme = await api.partner("acme")
    mid = await migrate(api, "acme", {"api_version": "3.0"}, **{**FORCED, "fallback_months": 6})
    base = f"/v1/migrations/{mid}"
    assert (await api.http.post(f"{base}/plan", json=MIGRATION_PLAN, headers=acme)).is_success
    body = {**IMPLEMENTATION, "manifest": BAD}
    resp = await api.http.post(f"{base}/implementation", json=body, headers=acme)
    assert resp.status_code == 200, resp.text
    resp = await api.http.post(f"{base}/documentation", json=MIGRATION_DOCS, headers=acme)
    assert resp.status_code == 200 and resp.json()["step"] == "remediation", resp.text
    assert set(failures(resp.json())) == {
        "workflow",
        "permission_boundary",
        "runtime_compatibility",
    }
    await _completes_healthy(api, mid, acme)
    shown = (await api.http.get("/v1/partners/acme/manifest", headers=acme)).json()
    assert "orders:*" not in shown["manifest"]["permissions"], shown
    assert shown["manifest"]["workflows"] == []
    profile = (await api.http.get("/v1/partners/acme", headers=acme)).json()
    assert profile["runtime"]["name"] == "kwanus-runtime", profile


async def test_a_proposal_removing_what_a_manifest_workflow_asks_for_must_request_it_again(
    api: Api,
) -> None:
    """Issue 20 / M-8.1 at submission (E-2.7): a proposal that removes a permission and grants
    the workflow anew must cover what that workflow of the partner's manifest asks for with
    what the partner will hold — `removes` takes the permission away, so "held already" no
    longer covers it: 422 naming the grant's permissions, nothing started."""
    shipped = manifest(
        os_version="4.2",
        api_version="2.1",
        permissions=["orders:read", "stock:read"],
        workflows=[{**SYNC, "permissions": ["orders:read", "stock:read"]}],
    )
    body = partner_body(
        "acme",
        permissions=["orders:read", "stock:read"],
        grants=[{**SYNC_GRANT, "permissions": []}],
        manifest=shipped,
    )
    resp = await api.http.post("/v1/partners", json=body, headers=api.admin)
    assert resp.status_code == 201, resp.text
    acme = api.token("partner", "acme")
    proposal = proposal_body(
        category="C",
        requested_capabilities=[],
        integrations=[{"name": "order-sync", "kind": "workflow"}],
        removes=["order-sync", "stock:read"],
        migration_plan="the workflow is granted anew without stock reads",
    )
    resp = await api.http.post("/v1/expansions", json=proposal, headers=acme)
    assert resp.status_code == 422, resp.text
    assert "integrations.0.permissions" in resp.json()["errors"], resp.text
    assert "stock:read" in resp.json()["errors"]["integrations.0.permissions"]
    listed = await api.http.get("/v1/expansions", headers=acme)
    assert listed.json() == []


async def test_a_registered_manifest_names_versioned_platform_workflows(api: Api) -> None:
    """M-5.2 (unversioned changes are forbidden) at registration: a trigger or handler without
    `@version` is refused 422 naming it — it needs no matrix to judge — and nothing is stored.
    Registered, it would escape every workflow deprecation notice, which matches
    `name@version` (M-2.1)."""
    refused = await registered_with(api, {**SYNC, "handler": "notify.partner"})
    assert "M-5.2" in refused["errors"]["manifest.workflows.0.handler"], refused


async def test_a_partner_still_calling_the_version_moved_off_does_not_complete(
    ts_api: Api,  # noqa: F811
) -> None:
    """M-8.1 (Decision) / M-4.6 / M-4.7: the partner says it moved to API 3.0 and documents at
    once — no platform report has begun since, so validation sees no calls to 2.1. The
    platform then reports it calling 2.1 through the whole fallback period: the fallback's end
    must not find it healthy, and the migration must not complete with 3.0 registered."""
    api = ts_api
    acme = await api.partner("acme")
    mid = await migrate(api, "acme", {"api_version": "3.0"}, **{**API_MOVE, "fallback_months": 6})
    state = await ship(api, mid, acme, manifest(os_version="4.2"))
    assert state["step"] == "rollout", failures(state)  # validated on no evidence
    resp = await api.http.post(
        f"/v1/migrations/{mid}/rollout", json={"version": "3.0.0"}, headers=acme
    )
    assert resp.status_code == 200, resp.text
    end = datetime.fromisoformat(resp.json()["fallback"]["until"])
    await past_the_fallback(api, end, calls_by_version={"api:2.1": 5000, "api:3.0": 1})
    state = await judged_at_the_end(api, mid, acme, end)
    assert state["status"] != "completed", "completed while calling the API moved off"
    assert not state["monitoring"][-1]["healthy"]
    profile = (await api.http.get("/v1/partners/acme", headers=acme)).json()
    assert profile["api_version"] == "2.1"


async def test_a_registered_manifest_names_platform_workflow_rows_the_matrix_lists(
    api: Api,
) -> None:
    """E-9.2 / M-2.1 at registration: a trigger the matrix does not list — here the shipped
    `order.created@1.0` in another case — is refused 422 naming it, nothing stored."""
    refused = await registered_with(api, {**SYNC, "trigger": "Order.Created@1.0"})
    assert "manifest.workflows.0.trigger" in refused["errors"], refused


@pytest.mark.parametrize(
    ("first", "again"),
    [
        ("docs/migration/guide.md", "./docs/migration/guide.md"),
        ("docs/migration/guide.md", "docs/./migration/guide.md"),
        ("docs/migration", "docs/migration/"),
        ("https://docs.example.com/guide", "https://docs.example.com:443/guide"),
        ("http://docs.example.com/guide", "http://docs.example.com:80/guide"),
        ("https://docs.example.com/guide", "https://docs.example.com./guide"),
        ("https://docs.example.com/guide", "https://docs.example.com/./guide"),
    ],
)
def test_one_document_spelt_two_ways_is_one_reference(first: str, again: str) -> None:
    """M-7.1 / E-2.6: each document is its own — a path with `.` segments or a trailing `/`,
    a URL with its scheme's default port, a fully qualified host's trailing dot or `.`
    segments names the same document as its plain spelling: refused on the second."""
    decision = check_references(
        {"migration_guide": first, "compatibility_notes": again}, rule="M-7.1"
    )
    assert [f.field for f in decision.findings] == ["compatibility_notes"], (first, again)


async def test_a_migrations_documents_are_five_documents_not_one_spelt_five_ways(
    api: Api,
) -> None:
    """M-7.1 through the API: the five required documents given as one path spelt five ways
    are refused 422 naming the four repeats; the documentation step is still awaited."""
    acme = await api.partner("acme")
    mid = await migrate(api, "acme", {"api_version": "3.0"})
    base = f"/v1/migrations/{mid}"
    assert (await api.http.post(f"{base}/plan", json=MIGRATION_PLAN, headers=acme)).is_success
    body = {**IMPLEMENTATION, "manifest": manifest()}
    assert (await api.http.post(f"{base}/implementation", json=body, headers=acme)).is_success
    guide = "docs/migration.md"
    docs = {
        "migration_guide": guide,
        "compatibility_notes": f"./{guide}",
        "version_notes": f"././{guide}",
        "workflow_changes": "docs/./migration.md",
        "permission_changes": "./docs/./migration.md",
    }
    resp = await api.http.post(f"{base}/documentation", json=docs, headers=acme)
    assert resp.status_code == 422, resp.text
    assert set(resp.json()["errors"]) == set(docs) - {"migration_guide"}, resp.text
    state = (await api.http.get(base, headers=acme)).json()
    assert state["step"] == "documentation" and state["documentation"] is None
    await api.env.client.get_workflow_handle(f"migration-{mid}").terminate("test over")


async def test_a_later_completion_does_not_undo_another_migrations_move(
    ts_api: Api,  # noqa: F811
) -> None:
    """M-4.7 / M-5.1: migration B (a runtime migration, no target) validates a manifest on API
    2.1 while 2.1 is supported; TSC then deprecates 2.1 and migration A moves the partner to
    3.0 and completes first. B's completion must not put the partner back on 2.1."""
    api = ts_api
    acme = await api.partner("acme")
    tsc = api.token("TSC")
    b, b_end = await validated_on_21_then_deprecated(api, acme, tsc)
    a = await migrate(api, "acme", {"api_version": "3.0"}, **{**API_MOVE, "fallback_months": 6})
    state = await ship(api, a, acme, manifest(os_version="4.2"))
    assert state["step"] == "rollout", failures(state)
    resp = await api.http.post(
        f"/v1/migrations/{a}/rollout", json={"version": "3.0.0"}, headers=acme
    )
    assert resp.status_code == 200, resp.text
    a_end = datetime.fromisoformat(resp.json()["fallback"]["until"])

    await completes(api, a, acme, a_end)
    profile = (await api.http.get("/v1/partners/acme", headers=acme)).json()
    assert profile["api_version"] == "3.0"
    await completes(api, b, acme, b_end)
    profile = (await api.http.get("/v1/partners/acme", headers=acme)).json()
    assert profile["api_version"] == "3.0", "B's completion undid A's move to 3.0"
