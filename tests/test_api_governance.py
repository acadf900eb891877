"""No way around governance, tried over HTTP as a partner would (issue 15): a tier moves only by
governance, a release adds and never wipes, the platform's matrix is the platform's, evidence is
the platform's, and a grant is what its permissions say. Each test names its rule and drives the
real API, worker and dev server; nothing is seeded by hand but the platform's own reports."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from bench.drive import (
    Driver,
    State,
    at_step,
    decided,
    integrate_and_release,
    migration_steps,
)
from store.tables import AuditEvent, Process, utcnow
from testdata.factories import partner_body, proposal_body
from tests.apistack import Api, unique
from tests.conftest import end_runs

DAY = timedelta(days=1)
PROBLEM = "application/problem+json"
RELEASE = {
    "version": "1.0.0",
    "migration_guide": "docs/1.0",
    "fallback_behaviour": "off",
    "compatibility": [{"kind": "runtime", "name": "kwanus-runtime", "version": "3.0"}],
}


def refused(resp: Any, status: int, rule: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = resp.json()
    assert rule in (body.get("rule") or "").split(", "), body
    return body


async def nothing_started(api: Api, workflow_id: str) -> None:
    assert not await api.workflow_exists(workflow_id)
    with api.db.session() as session:
        assert session.get(Process, workflow_id) is None


async def approved(api: Api, d: Driver, partner: dict[str, str], body: dict[str, Any]) -> str:
    """Submit a proposal and take it through reviews and votes to its integration plan."""
    eid = unique("gov")
    resp = await api.http.post("/v1/expansions", json={**body, "id": eid}, headers=partner)
    assert resp.status_code == 202, resp.text
    state = await decided(d, eid, partner, await d.bodies())
    assert state["decision"]["outcome"] == "approved", state["decision"]
    await d.until("expansions", eid, partner, at_step("integration_plan"), what="integrating")
    return eid


async def released(
    api: Api, d: Driver, partner: dict[str, str], body: dict[str, Any], **release: Any
) -> State:
    """A proposal approved, integrated and released: its state once the release is applied."""
    eid = await approved(api, d, partner, body)
    await integrate_and_release(d, eid, partner, {**RELEASE, **release})
    return await d.until(
        "expansions", eid, partner, lambda s: s["stage"] == "Monitoring", what="released"
    )


async def held(api: Api, partner_id: str) -> dict[str, Any]:
    resp = await api.http.get(f"/v1/partners/{partner_id}", headers=api.admin)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


async def end_migration(api: Api, mid: str) -> None:
    await api.env.client.get_workflow_handle(f"migration-{mid}").terminate("test over")


def upgrade_to(tier: str, **changes: Any) -> dict[str, Any]:
    """A category-B proposal moving the partner to `tier`, requesting no grants."""
    return proposal_body(
        category="B",
        requested_tier=tier,
        migration_plan="dual run",
        **{"requested_capabilities": [], "integrations": [], **changes},
    )


def migration(**changes: Any) -> dict[str, Any]:
    body = {
        "partner_id": "acme",
        "trigger": "tier_downgrade",
        "type": "tier",
        "subtype": "downgrade",
        "target": {"tier": "community"},
    }
    body.update(changes)
    return body


# --- 1. a tier moves only by governance ----------------------------------------------------


async def test_no_one_starts_a_tier_upgrade_by_hand(api: Api) -> None:
    """E-7.1: a partner's own tier_upgrade (and a body's) is refused, nothing started."""
    acme = await api.partner("acme")
    mid = unique("up")
    upgrade = migration(id=mid, trigger="tier_upgrade", subtype="upgrade", target={"tier": "x"})
    upgrade["target"] = {"tier": "premier"}
    body = refused(await api.http.post("/v1/migrations", json=upgrade, headers=acme), 422, "E-7.1")
    assert "trigger" in body["errors"]
    resp = await api.http.post("/v1/migrations", json=upgrade, headers=api.token("CGB"))
    refused(resp, 422, "E-7.1")
    await nothing_started(api, f"migration-{mid}")
    assert (await held(api, "acme"))["tier"] == "verified"


async def test_a_tier_downgrade_to_a_higher_tier_is_refused(api: Api) -> None:
    """E-7.1: a partner's tier_downgrade naming a tier above its own is an upgrade by another
    name — refused; to its own tier it moves nothing (E-7.2); below, it is accepted (M-2.2)."""
    acme = await api.partner("acme")
    mid = unique("down")
    higher = migration(id=mid, target={"tier": "premier"})
    body = refused(await api.http.post("/v1/migrations", json=higher, headers=acme), 422, "E-7.1")
    assert "target.tier" in body["errors"]
    same = migration(id=mid, target={"tier": "verified"})
    refused(await api.http.post("/v1/migrations", json=same, headers=acme), 422, "E-7.2")
    await nothing_started(api, f"migration-{mid}")
    lower = migration(id=mid)
    resp = await api.http.post("/v1/migrations", json=lower, headers=acme)
    assert resp.status_code == 202, resp.text
    await end_migration(api, mid)


async def test_a_tier_target_on_any_other_migration_is_refused(api: Api) -> None:
    """M-3.1: a body's required migration carrying a tier in its target is refused; a forced
    downgrade (M-2.3) goes down only (E-7.1); a tier migration names its tier."""
    await api.partner("acme")
    tsc, sco = api.token("TSC"), api.token("SCO")
    mid = unique("req")
    required = migration(
        id=mid,
        trigger="api_deprecation",
        type="version",
        subtype="api",
        target={"api_version": "3.0", "tier": "premier"},
    )
    body = refused(await api.http.post("/v1/migrations", json=required, headers=tsc), 422, "M-3.1")
    assert "target.tier" in body["errors"]
    forced_up = migration(id=mid, trigger="security_violation", target={"tier": "strategic"})
    refused(await api.http.post("/v1/migrations", json=forced_up, headers=sco), 422, "E-7.1")
    no_tier = migration(id=mid, trigger="security_violation", target={})
    refused(await api.http.post("/v1/migrations", json=no_tier, headers=sco), 422, "M-3.1")
    await nothing_started(api, f"migration-{mid}")
    forced = migration(id=mid, trigger="security_violation")
    assert (await api.http.post("/v1/migrations", json=forced, headers=sco)).status_code == 202
    await end_migration(api, mid)


async def test_a_capability_expansion_migration_names_a_released_expansion(api: Api) -> None:
    """M-3.2 (extended): a partner's own capability_expansion migration names, in
    expansion_id, a released expansion of its own — none, or one not released, is refused."""
    acme = await api.partner("acme")
    mid = unique("cap")
    body = migration(
        id=mid,
        trigger="capability_expansion",
        type="permission",
        subtype="governed_expansion",
        target={},
    )
    refused(await api.http.post("/v1/migrations", json=body, headers=acme), 422, "M-3.2")
    d = Driver(api.http, api.admin)
    eid = await approved(api, d, acme, proposal_body())
    resp = await api.http.post("/v1/migrations", json={**body, "expansion_id": eid}, headers=acme)
    refused(resp, 422, "M-3.2")  # approved, not released
    await nothing_started(api, f"migration-{mid}")
    await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("test over")


async def test_the_released_upgrades_rollout_is_the_only_tier_change(api: Api) -> None:
    """E-7.1, E-2.7, M-4.5: an approved category-B upgrade's release moves no tier; it starts
    the upgrade migration, whose rollout — and nothing else — raises the tier; its completion
    does not move it again."""
    acme = await api.partner("acme")
    await api.platform_reports("acme", {"orders:read": 40})
    d = Driver(api.http, api.admin)
    upgrade = upgrade_to("premier")
    state = await released(api, d, acme, upgrade)
    assert (await held(api, "acme"))["tier"] == "verified"  # E-2.7: not at the release
    mid = state["migration_id"]
    assert mid == f"exp-{state['id']}"
    await migration_steps(d, mid, acme, rollout=None)
    await d.until("migrations", mid, acme, at_step("rollout"), what="validated")
    assert (await held(api, "acme"))["tier"] == "verified"  # not before its rollout
    rollout = {
        "version": "2.0.0",
        "compatibility": [{"kind": "os", "name": "kwanus", "version": "5.0"}],
    }
    resp = await api.http.post(f"/v1/migrations/{mid}/rollout", json=rollout, headers=acme)
    assert resp.status_code == 200, resp.text
    change = resp.json()["tier_change"]
    assert (change["before"], change["target"], change["applied"]) == ("verified", "premier", True)
    assert (await held(api, "acme"))["tier"] == "premier"
    with api.db.session() as session:
        row = session.exec(
            select(AuditEvent).where(AuditEvent.key == f"migration-{mid}:rollout")
        ).one()
    assert row.stage == "Rollout" and row.data["tier_change"]["applied"]
    await end_migration(api, mid)
    await api.env.client.get_workflow_handle(f"expansion-{state['id']}").terminate("test over")


async def rolled_out(d: Driver, api: Api, mid: str, who: dict[str, str]) -> dict[str, Any]:
    """The partner's migration steps, then its rollout: the rollout's tier change."""
    await migration_steps(d, mid, who, rollout=None)
    await d.until("migrations", mid, who, at_step("rollout"), what="validated")
    resp = await api.http.post(
        f"/v1/migrations/{mid}/rollout", json={"version": "2.0.0"}, headers=who
    )
    assert resp.status_code == 200, resp.text
    change: dict[str, Any] = resp.json()["tier_change"]
    return change


async def test_a_pending_upgrade_does_not_undo_a_forced_downgrade(api: Api) -> None:
    """E-7.1, M-2.3: an approved upgrade's migration rises only from the tier its proposal was
    judged on — after a forced downgrade lands first, its rollout moves nothing (and says
    why), so a security downgrade is not undone, nor a tier skipped."""
    acme = await api.partner("acme")
    await api.platform_reports("acme", {"orders:read": 40})
    d = Driver(api.http, api.admin)
    upgrade = upgrade_to("premier")
    pending = (await released(api, d, acme, upgrade))["migration_id"]
    forced = unique("forced")
    body = migration(id=forced, trigger="security_violation")
    assert (
        await api.http.post("/v1/migrations", json=body, headers=api.token("SCO"))
    ).status_code == 202
    down = await rolled_out(d, api, forced, acme)
    assert (down["before"], down["target"], down["applied"]) == ("verified", "community", True)
    stale = await rolled_out(d, api, pending, acme)
    assert (stale["before"], stale["target"], stale["applied"]) == ("community", "premier", False)
    assert any("(E-7.1)" in reason for reason in stale["reasons"]), stale
    assert (await held(api, "acme"))["tier"] == "community"
    for mid in (pending, forced):
        await end_migration(api, mid)


async def test_no_upgrade_while_a_forced_downgrade_is_under_way(api: Api) -> None:
    """E-7.1, E-7.2: the platform reports calls on a permission never granted — a forced
    downgrade starts; a pending upgrade rolled out meanwhile does not rise, whether or not the
    downgrade has rolled out yet."""
    acme = await api.partner("acme")
    await api.platform_reports("acme", {"orders:read": 40})
    d = Driver(api.http, api.admin)
    upgrade = upgrade_to("premier")
    pending = (await released(api, d, acme, upgrade))["migration_id"]
    await api.platform_reports("acme", {"payments:write": 3}, weeks_ago=(0,))
    change = await rolled_out(d, api, pending, acme)
    assert not change["applied"] and any("forced downgrade" in r for r in change["reasons"])
    again = await api.http.post("/v1/expansions", json=upgrade, headers=acme)
    assert "compliance_clean" in refused(again, 422, "E-7.1")["errors"]  # nor a new one
    assert (await held(api, "acme"))["tier"] == "verified"
    await end_migration(api, pending)


async def test_a_tiers_grants_come_with_the_tier(api: Api) -> None:
    """E-7.4, E-2.7, M-2.2: a category-B proposal's grants are the new tier's — granted at the
    rollout that moves the tier, not at the release: a partner that declines the upgrade
    holds nothing of it; one that rolls it out holds both."""
    d = Driver(api.http, api.admin)
    upgrade = upgrade_to(
        "verified",
        requested_capabilities=[
            {"name": "order-hooks", "kind": "workflow_trigger", "permissions": ["hooks:read"]}
        ],
        integrations=[{"name": "flows", "kind": "workflow", "permissions": ["flows:read"]}],
    )
    for partner_id, decline in (("acme", True), ("globex", False)):
        body = partner_body(partner_id, tier="community")
        assert (
            await api.http.post("/v1/partners", json=body, headers=api.admin)
        ).status_code == 201
        who = api.token("partner", partner_id)
        await api.platform_reports(partner_id, {"orders:read": 40})
        mid = (await released(api, d, who, upgrade))["migration_id"]
        assert (await held(api, partner_id))["capabilities"] == ["orders-dashboard"]
        if decline:
            await d.until("migrations", mid, who, at_step("plan"), what="plan open")
            url = f"/v1/migrations/{mid}/decline"
            assert (await api.http.post(url, json={}, headers=who)).status_code == 200
            after = await held(api, partner_id)
            assert (after["tier"], after["capabilities"]) == ("community", ["orders-dashboard"])
            continue
        change = await rolled_out(d, api, mid, who)
        assert change["applied"] and change["withheld"] == []
        after = await held(api, partner_id)
        assert after["tier"] == "verified"
        assert after["capabilities"] == ["flows", "order-hooks", "orders-dashboard"]
        await end_migration(api, mid)


# --- 2. a release adds; it never wipes ------------------------------------------------------


def read_only(name: str, *permissions: str) -> dict[str, Any]:
    return {"name": name, "kind": "read_only", "permissions": list(permissions)}


async def test_a_release_keeps_what_the_partner_held(api: Api) -> None:
    """E-2.7 (Decision): two releases in a row keep what the partner held and both grants; a
    `removes` takes exactly its item, its permissions with it; a `removes` the partner does not
    hold, or a grant or permission it holds requested again, is refused at submission; the audit
    event records before and after."""
    resp = await api.http.post(
        "/v1/partners",
        json=partner_body("acme", permissions=["orders:read", "customers:read"]),
        headers=api.admin,
    )
    assert resp.status_code == 201, resp.text
    acme = api.token("partner", "acme")
    d = Driver(api.http, api.admin)
    first = proposal_body(
        requested_capabilities=[read_only("inventory-view", "inventory:read")], integrations=[]
    )
    done = await released(api, d, acme, first)
    # P-1: sent again under its id, the released proposal is the process it started — not
    # judged again against the grant its own release added
    again = await api.http.post("/v1/expansions", json={**first, "id": done["id"]}, headers=acme)
    assert again.status_code == 202 and again.json()["workflow_id"] == done["workflow_id"]
    second = proposal_body(
        requested_capabilities=[read_only("stock-alerts", "inventory:read", "stock:read")],
        integrations=[],
    )
    # inventory:read is the first release's: granted again it would be granted twice
    resp = await api.http.post("/v1/expansions", json=second, headers=acme)
    errors = refused(resp, 422, "E-2.7")["errors"]
    assert errors.keys() == {"requested_capabilities.0.permissions.0"}
    assert "capability 'inventory-view'" in errors["requested_capabilities.0.permissions.0"]
    second["requested_capabilities"] = [read_only("stock-alerts", "stock:read")]
    await released(api, d, acme, second)
    partner = await held(api, "acme")
    assert partner["permissions"] == [
        "customers:read",
        "inventory:read",
        "orders:read",
        "stock:read",
    ]
    assert partner["capabilities"] == ["inventory-view", "orders-dashboard", "stock-alerts"]
    assert {g["name"]: g["kind"] for g in partner["grants"]} == {
        "orders-dashboard": "unknown",
        "inventory-view": "read_only",
        "stock-alerts": "read_only",
    }

    not_held = proposal_body(removes=["payments:write"], migration_plan="m", integrations=[])
    resp = await api.http.post("/v1/expansions", json=not_held, headers=acme)
    assert refused(resp, 422, "E-2.7")["errors"].keys() == {"removes.0"}
    # held already: granted again under its name (say, as another kind) it would hide a write
    again = proposal_body(
        requested_capabilities=[
            {"name": "stock-alerts", "kind": "write", "permissions": ["stock:write"]}
        ],
        integrations=[],
    )
    resp = await api.http.post("/v1/expansions", json=again, headers=acme)
    assert refused(resp, 422, "E-2.7")["errors"].keys() == {"requested_capabilities.0.name"}

    removal = proposal_body(
        requested_capabilities=[read_only("order-trends", "trends:read")],
        integrations=[],
        removes=["stock-alerts"],
        migration_plan="stock alerts retire with 1.2",
    )
    state = await released(api, d, acme, removal)
    partner = await held(api, "acme")
    assert partner["capabilities"] == ["inventory-view", "order-trends", "orders-dashboard"]
    # stock:read went with its grant; the rest stay
    assert partner["permissions"] == [
        "customers:read",
        "inventory:read",
        "orders:read",
        "trends:read",
    ]
    with api.db.session() as session:
        row = session.exec(
            select(AuditEvent).where(AuditEvent.key == f"expansion-{state['id']}:governance_update")
        ).one()
    assert row.data["removed"] == ["stock-alerts"]
    assert row.data["permissions_removed"] == ["stock:read"]
    assert "stock-alerts" in [g["name"] for g in row.data["before"]["grants"]]
    assert "stock-alerts" not in [g["name"] for g in row.data["after"]["grants"]]
    assert partner["tier"] == "verified"
    if state["migration_id"]:
        await end_migration(api, state["migration_id"])


async def test_e27_what_the_partner_holds_is_not_requested_again(api: Api) -> None:
    """E-2.7: a proposal requesting a permission the partner holds (registered, or carried by a
    grant), a workflow it holds as the other type, or one permission or workflow twice, is
    refused at submission — 422 naming each item and what carries it, nothing started or
    stored; with what it holds named in `removes`, the same request is a change, accepted."""
    sync = {
        "type": "capability",
        "name": "order-sync",
        "kind": "workflow_trigger",
        "permissions": ["sync:read"],
    }
    resp = await api.http.post(
        "/v1/partners", json=partner_body("acme", grants=[sync]), headers=api.admin
    )
    assert resp.status_code == 201, resp.text
    acme = api.token("partner", "acme")
    eid = unique("held")
    body = proposal_body(
        id=eid,
        requested_capabilities=[
            read_only("order-trends", "analytics:read", "orders:read"),
            {"name": "flows", "kind": "workflow_trigger", "permissions": []},
        ],
        integrations=[
            {"name": "Order-Sync", "kind": "workflow", "permissions": ["sync:read"]},
            {"name": "flows", "kind": "workflow", "permissions": ["analytics:read"]},
        ],
    )
    resp = await api.http.post("/v1/expansions", json=body, headers=acme)
    errors = refused(resp, 422, "E-2.7")["errors"]
    assert errors.keys() == {
        "requested_capabilities.0.permissions.1",  # orders:read, registered
        "integrations.0.name",  # the workflow order-sync, held as a capability
        "integrations.0.permissions.0",  # sync:read, carried by that capability
        "integrations.1.name",  # flows, a capability too in this proposal
        "integrations.1.permissions.0",  # analytics:read, asked by order-trends too
    }, errors
    assert "'orders:read'" in errors["requested_capabilities.0.permissions.1"]
    assert "(registered)" in errors["requested_capabilities.0.permissions.1"]
    assert "capability 'order-sync' (workflow_trigger)" in errors["integrations.0.name"]
    assert "capability 'order-sync'" in errors["integrations.0.permissions.0"]
    assert "requested twice" in errors["integrations.1.name"]
    assert "requested twice" in errors["integrations.1.permissions.0"]
    await nothing_started(api, f"expansion-{eid}")
    get = await api.http.get(f"/v1/expansions/{eid}", headers=acme)
    assert get.status_code == 404, get.text

    change = proposal_body(
        id=eid,
        requested_capabilities=[read_only("order-trends", "analytics:read", "orders:read")],
        integrations=[body["integrations"][0]],
        removes=["order-sync", "orders:read"],
        migration_plan="order-sync moves from a trigger to an integration",
    )
    resp = await api.http.post("/v1/expansions", json=change, headers=acme)
    assert resp.status_code == 202, resp.text


# --- 3. the platform's matrix belongs to the platform --------------------------------------


async def test_a_partners_release_declares_its_own_compatibility(api: Api) -> None:
    """E-9.2 (Decision): a release's compatibility is the partner's own — the platform's rows
    stay as they are — a status is refused, and a declaration of a retired or unlisted version
    is refused with nothing sent (the release stays awaited)."""
    acme = await api.partner("acme")
    tsc = api.token("TSC")
    retire = {
        "entries": [{"kind": "os", "name": "kwanus", "version": "3.9", "status": "retired"}],
        "reason": "3.9 is gone",
    }
    assert (
        await api.http.put("/v1/compatibility-matrix", json=retire, headers=tsc)
    ).status_code == 200
    d = Driver(api.http, api.admin)
    eid = await approved(api, d, acme, proposal_body())
    await integrate_and_release(d, eid, acme, release=None)
    await d.until("expansions", eid, acme, at_step("release"), what="awaiting the release")
    matrix_before = (await api.http.get("/v1/compatibility-matrix", headers=acme)).json()
    url = f"/v1/expansions/{eid}/release"
    os_42 = {"kind": "os", "name": "kwanus", "version": "4.2"}
    with_status = {**RELEASE, "compatibility": [{**os_42, "status": "retired"}]}
    resp = await api.http.post(url, json=with_status, headers=acme)
    assert resp.status_code == 422 and "compatibility.0.status" in resp.json()["errors"]
    retired = {**RELEASE, "compatibility": [os_42, {**os_42, "version": "3.9"}]}
    body = refused(await api.http.post(url, json=retired, headers=acme), 422, "E-9.2")
    assert body["errors"].keys() == {"compatibility.1"}
    unlisted = {**RELEASE, "compatibility": [{**os_42, "version": "9.9"}]}
    refused(await api.http.post(url, json=unlisted, headers=acme), 422, "E-9.2")
    assert (await api.http.get(f"/v1/expansions/{eid}", headers=acme)).json()["step"] == "release"

    resp = await api.http.post(url, json={**RELEASE, "compatibility": [os_42]}, headers=acme)
    assert resp.status_code == 200, resp.text
    await d.until("expansions", eid, acme, lambda s: s["stage"] == "Monitoring", what="released")
    assert (await api.http.get("/v1/compatibility-matrix", headers=acme)).json() == matrix_before
    declared = (await held(api, "acme"))["compatibility"]
    assert [(c["kind"], c["version"], c["release"], c["source"]) for c in declared] == [
        ("os", "4.2", "1.0.0", f"expansion-{eid}")
    ]
    record = (await api.http.get(f"/v1/expansions/{eid}/decision-record", headers=acme)).json()
    assert record["decided"]["release"]["body"]["compatibility"] == [os_42]
    await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("test over")


# --- 4. evidence comes from the platform -----------------------------------------------------


async def test_telemetry_is_reported_by_the_platform_only(api: Api) -> None:
    """E-7.1 (Decision), P-6: a partner's or ops' report is 403; the platform's is accepted
    with its reporter; the platform role may do nothing else but read partners and the
    matrix."""
    acme = await api.partner("acme")
    end = utcnow()
    report = {
        "period_start": (end - 7 * DAY).isoformat(),
        "period_end": end.isoformat(),
        "workflow_success_rate": 0.999,
        "api_error_rate": 0.001,
        "calls_by_version": {"api:2.1": 10, "runtime:kwanus-runtime@3.0": 4},
    }
    url = "/v1/partners/acme/telemetry"
    for who in (acme, api.token("ops"), api.token("SCO"), api.admin):
        assert (await api.http.post(url, json=report, headers=who)).status_code == 403
    platform = api.token("platform")
    resp = await api.http.post(url, json=report, headers=platform)
    assert resp.status_code == 201, resp.text
    assert resp.json()["report"]["calls_by_version"] == report["calls_by_version"]
    bad = {**report, "calls_by_version": {"nonsense": 1}}
    assert (await api.http.post(url, json=bad, headers=platform)).status_code == 422
    assert (await api.http.get("/v1/partners/acme", headers=platform)).status_code == 200
    assert (await api.http.get("/v1/expansions", headers=platform)).status_code == 403
    assert (await api.http.get("/v1/audit", headers=platform)).status_code == 403


# --- 5. a grant is what its permissions say -------------------------------------------------


async def test_kind_permission_and_tier_catalogue_refusals(api: Api) -> None:
    """E-6.1, E-8.1, E-7.4: a read-only capability carrying `payments:write`, an API
    integration that writes, and a kind or action the tier's catalogue lacks are refused at
    submission, each field named; nothing started or stored."""
    acme = await api.partner("acme")
    eid = unique("fit")
    cases = (
        ("E-6.1", {"requested_capabilities": [read_only("pay", "payments:write")]}),
        ("E-8.1", {"integrations": [{"name": "i", "kind": "api", "permissions": ["o:write"]}]}),
        (
            "E-7.4",
            {
                "requested_capabilities": [
                    {"name": "adm", "kind": "advanced_permission", "permissions": ["o:admin"]}
                ]
            },
        ),
    )
    for rule, change in cases:
        body = proposal_body(id=eid, **change)
        resp = await api.http.post("/v1/expansions", json=body, headers=acme)
        errors = refused(resp, 422, rule)["errors"]
        assert any(f"({rule})" in message for message in errors.values()), errors
    await nothing_started(api, f"expansion-{eid}")


async def test_a_partner_cannot_take_the_id_of_a_process_migration(api: Api) -> None:
    """P-1, M-2.1: the ids processes give their migrations (a notice's `<notice>.<partner>`, an
    expansion's `exp-…`, a remediation's `rem-…`, a forced downgrade's `downgrade-…`) and
    their remediations are refused as client-chosen ids — else a partner could start its own
    optional migration under the id a required one will take, and decline it."""
    acme = await api.partner("acme")
    for mid in ("api-kwanus-2_1.acme", "exp-x", "rem-x", "downgrade-acme-1"):
        resp = await api.http.post("/v1/migrations", json=migration(id=mid), headers=acme)
        assert resp.status_code == 422 and "id" in resp.json()["errors"], resp.text
        await nothing_started(api, f"migration-{mid}")
    # nor may a body: a notice's migrations are `<notice>.<partner>`, a failed validation's
    # remediation `<migration>-v<n>`
    notice = {"id": "rem-x", "kind": "api", "version": "2.1", "replacement": "3.0"}
    resp = await api.http.post("/v1/deprecations", json=notice, headers=api.token("TSC"))
    assert resp.status_code == 422 and "id" in resp.json()["errors"], resp.text
    violation = {"id": "m1-v1", "kind": "k", "severity": "minor", "description": "d"}
    resp = await api.http.post(
        "/v1/partners/acme/violations", json=violation, headers=api.token("SCO")
    )
    assert resp.status_code == 422 and "id" in resp.json()["errors"], resp.text


async def test_registration_keeps_to_the_tier_and_the_kinds(api: Api) -> None:
    """E-7.4, E-6.1: a partner is registered with grants that are what their permissions say
    and permissions its tier's catalogue allows."""
    cases = (
        ("E-7.4", {"tier": "community", "permissions": ["orders:write"]}),
        (
            "E-6.1",
            {
                "grants": [
                    {
                        "type": "capability",
                        "name": "c",
                        "kind": "read_only",
                        "permissions": ["orders:write"],
                    }
                ]
            },
        ),
    )
    twice = {"type": "capability", "name": "x", "kind": "read_only", "permissions": ["o:read"]}
    cases += (("E-2.7", {"grants": [twice, {**twice, "kind": "write"}]}),)  # one grant a name
    for rule, change in cases:
        resp = await api.http.post(
            "/v1/partners", json=partner_body("acme", **change), headers=api.admin
        )
        refused(resp, 422, rule)
    assert (await api.http.get("/v1/partners/acme", headers=api.admin)).status_code == 404


async def test_no_tier_is_made_a_way_up(api: Api) -> None:
    """E-7.3, E-7.4: a tier is created only by a category-B proposal, and ranks by what it
    holds — a new tier placed low with a wide catalogue (a "downgrade" onto it would widen what
    the partner may do, with no upgrade's checks) is refused at submission, and a policy edit
    adds no tier."""
    acme = await api.partner("acme")
    wide = {
        "name": "sandbox",
        "capability_kinds": ["read_only", "ui_component", "advanced_permission"],
        "integration_kinds": ["api", "extension"],
        "permission_actions": ["read", "write", "admin", "delete"],
    }
    eid = unique("sandbox")
    body = upgrade_to(
        "sandbox",
        id=eid,
        new_tier={"spec": wide, "after": "community", "compatibility_plan": "c"},
    )
    resp = await api.http.post("/v1/expansions", json=body, headers=acme)
    assert "new_tier.spec" in refused(resp, 422, "E-7.4")["errors"]
    await nothing_started(api, f"expansion-{eid}")
    policy = (await api.http.get("/v1/policy", headers=api.admin)).json()
    content = {k: v for k, v in policy.items() if k != "version"}
    content["tiers"] = [*content["tiers"], {**content["tiers"][-1], "name": "platinum"}]
    resp = await api.http.put("/v1/policy", json=content, headers=api.admin)
    refused(resp, 422, "E-7.3")


def governance_change(change: dict[str, Any]) -> dict[str, Any]:
    """A category-D proposal (E-3.4): a rule change, granting and removing nothing."""
    return proposal_body(
        category="D",
        requested_capabilities=[],
        integrations=[],
        description="Fewer open proposals per partner",
        policy_change=change,
    )


async def test_a_category_d_release_publishes_its_policy_change(
    api: Api, request: pytest.FixtureRequest
) -> None:
    """E-3.4 (Decision): a category-D proposal carries its `policy_change`, judged against the
    spec's floors at submission (a loosening: 422 naming the rule, nothing started) and again
    at release (the policy in force moved on: 409 naming the rule, the release step still
    open); its release publishes a new policy version authored by the expansion, listed in
    `GET /v1/policy/history` with the fields it changed. Running processes keep theirs (P-5)."""
    acme = await api.partner(unique("gov"))
    d = Driver(api.http, api.admin)
    loosening = await api.http.post(
        "/v1/expansions",
        json=governance_change({"fallback_min_months": 3}),
        headers=acme,
    )
    refused(loosening, 422, "M-6.2")
    not_d = await api.http.post(
        "/v1/expansions",
        json=proposal_body(policy_change={"max_open_proposals_per_partner": 5}),
        headers=acme,
    )
    refused(not_d, 422, "E-3.4")

    before = (await api.http.get("/v1/policy", headers=acme)).json()
    change = {"max_open_proposals_per_partner": before["max_open_proposals_per_partner"] - 1}
    eid = await approved(api, d, acme, governance_change(change))
    wid = f"expansion-{eid}"
    await integrate_and_release(d, eid, acme, RELEASE)
    state = await d.until(
        "expansions", eid, acme, lambda s: s["stage"] == "Monitoring", what="released"
    )
    after = (await api.http.get("/v1/policy", headers=acme)).json()
    assert after["version"] == before["version"] + 1
    assert after["max_open_proposals_per_partner"] == change["max_open_proposals_per_partner"]
    assert state["policy_published"] == after["version"]
    history = (await api.http.get("/v1/policy/history", headers=acme)).json()
    assert history[-1] == {
        "version": after["version"],
        "author": wid,
        "at": history[-1]["at"],
        "fields": ["max_open_proposals_per_partner"],
    }
    with api.db.session() as session:
        event = session.exec(
            select(AuditEvent).where(AuditEvent.key == f"{wid}:policy_change")
        ).one()
    assert event.data["policy"] == after["version"] and "E-3.4" in event.rules
    await end_runs(api.env.client, [wid], request.node.name)  # its history: the patch's


async def test_a_policy_change_that_no_longer_holds_is_refused_at_release(api: Api) -> None:
    """E-3.4: a category-D change judged fine at submission is judged again at release against
    the policy in force then. Here CGB raised the fallback minimum meanwhile, so the change's
    shorter default would break M-6.2: the release is a 409 naming the rule, nothing is
    published, and the release step stays open."""
    acme = await api.partner(unique("gov"))
    d = Driver(api.http, api.admin)
    current = (await api.http.get("/v1/policy", headers=acme)).json()
    eid = await approved(api, d, acme, governance_change({"fallback_default_months": 6}))
    tightened = {k: v for k, v in current.items() if k != "version"}
    tightened |= {"fallback_min_months": 9, "fallback_default_months": 12}
    resp = await api.http.put("/v1/policy", json=tightened, headers=api.token("CGB"))
    assert resp.status_code == 200, resp.text
    version = resp.json()["version"]
    base = f"/v1/expansions/{eid}"
    plan = {"versioning": "semver", "compatibility_rules": "additive", "rollout_plan": "canary"}
    assert (await api.http.post(f"{base}/integration-plan", json=plan, headers=acme)).is_success
    await d.until("expansions", eid, acme, at_step("implementation"), what="implementing")
    report = {"development": "PR", "testing": "CI", "documentation": "DOC"}
    assert (await api.http.post(f"{base}/implementation", json=report, headers=acme)).is_success
    await d.until("expansions", eid, acme, at_step("release"), what="releasing")
    conflict = await api.http.post(f"{base}/release", json=RELEASE, headers=acme)
    refused(conflict, 409, "M-6.2")
    state = (await api.http.get(base, headers=acme)).json()
    assert state["step"] == "release" and state["policy_published"] is None
    assert (await api.http.get("/v1/policy", headers=acme)).json()["version"] == version
    await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("test over")
