"""Attacks on what issue 20 added after its first attack (tests/test_attack20.py): each manifest
version's `validated_at`, the `moved_at` telemetry is counted from, monitoring's watch of what a
migration moved off, registration's matrix check of platform workflow rows and its
`manifest_differs` — kept as tests through the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from testdata.factories import manifest, partner_body
from tests.apistack import Api
from tests.test_attack20 import FORCED, _completes_healthy, validated_on_21_then_deprecated
from tests.test_manifest import (  # noqa: F401  (ts_api: the fixture)
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


async def test_an_older_validated_manifest_does_not_undo_a_forced_move(
    ts_api: Api,  # noqa: F811
) -> None:
    """M-4.7 / M-2.3 / M-5.1: migration B (a runtime migration, no target) validates a manifest
    on API 2.1 while 2.1 is supported. TSC then deprecates 2.1; forced migration A moves the
    partner to 3.0 — the partner never acts, the window ends, the target applies (the
    registered manifest moved to 3.0) and A completes first. B's manifest, validated before A's
    target applied, must not put the partner back on 2.1: a forced move is as new as the moment
    it applied, not as old as the manifest it moved."""
    api = ts_api
    acme = await api.partner("acme")
    tsc = api.token("TSC")
    b, b_end = await validated_on_21_then_deprecated(api, acme, tsc)
    a = await migrate(api, "acme", {"api_version": "3.0"}, **{**FORCED, "fallback_months": 6})
    await _completes_healthy(api, a, acme)  # enforced at the window's end, then completed
    profile = (await api.http.get("/v1/partners/acme", headers=acme)).json()
    assert profile["api_version"] == "3.0"
    assert datetime.fromisoformat(profile["created_at"]) < b_end
    await completes(api, b, acme, b_end)
    profile = (await api.http.get("/v1/partners/acme", headers=acme)).json()
    assert profile["api_version"] == "3.0", "B's completion undid the forced move to 3.0"
    shown = (await api.http.get("/v1/partners/acme/manifest", headers=acme)).json()
    assert shown["manifest"]["api_version"] == "3.0", shown


async def test_a_forced_move_watches_calls_to_what_it_moved_off(
    ts_api: Api,  # noqa: F811
) -> None:
    """M-4.6 / M-4.7 / M-2.3: a forced migration to API 3.0 the partner never acts on — the
    target applies at the window's end. The platform then reports the partner calling 2.1 (and
    nothing it counts as deprecated: 2.1 is supported) through the fallback's last week: it
    must not be found healthy and completed on 3.0 — monitoring watches what the forced move
    moved the partner off, as it does what a validated manifest moves off."""
    api = ts_api
    acme = await api.partner("acme")
    mid = await migrate(api, "acme", {"api_version": "3.0"}, **{**FORCED, "fallback_months": 6})
    state = await enforced(api, mid, acme)
    end = datetime.fromisoformat(state["fallback"]["until"])
    await past_the_fallback(api, end, calls_by_version={"api:2.1": 5000})
    state = await judged_at_the_end(api, mid, acme, end)
    assert state["status"] != "completed", "completed on 3.0 while calling 2.1"
    assert not state["monitoring"][-1]["healthy"]


# --- registration (admin) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "refused"),
    [
        (" order.created@1.0 ", False),  # whitespace is stripped: the listed row
        ("order.created@1.0\t", False),
        ("ORDER.CREATED@1.0", True),  # not the row's name
        ("order.created@1.00", True),  # not the row's version
        ("order.created@1", True),
        ("kwanus@2.1", True),  # an API row, not a workflow row
        ("kwanus-runtime@3.0", True),  # a runtime row
        ("order.created@1.0 @2.0", True),
    ],
)
async def test_registration_matches_platform_workflow_rows_exactly(
    api: Api, trigger: str, refused: bool
) -> None:
    """E-9.2 / M-5.1 at registration: a trigger is the matrix's workflow row exactly — another
    kind's row, another spelling of the name or version is refused 422 naming it."""
    shipped = manifest(
        os_version="4.2", api_version="2.1", workflows=[{**SYNC, "trigger": trigger}]
    )
    body = partner_body("acme", grants=[{**SYNC_GRANT, "permissions": []}], manifest=shipped)
    resp = await api.http.post("/v1/partners", json=body, headers=api.admin)
    if refused:
        assert resp.status_code == 422, resp.text
        assert "manifest.workflows.0.trigger" in str(resp.json()), resp.text
        assert (await api.http.get("/v1/partners/acme", headers=api.admin)).status_code == 404
    else:
        assert resp.status_code == 201, resp.text
        shown = (await api.http.get("/v1/partners/acme/manifest", headers=api.admin)).json()
        assert shown["manifest"]["workflows"][0]["trigger"] == "order.created@1.0", shown


async def test_registration_takes_a_deprecated_row_refuses_a_retired_one(api: Api) -> None:
    """M-5.1 / E-9.2: a deprecated workflow row passes (its migration moves the partner); once
    TSC retires it, it is refused."""
    tsc = api.token("TSC")

    async def status(to: str) -> None:
        change = {
            "reason": f"order.created 1.0 {to}",
            "entries": [
                {"kind": "workflow", "name": "order.created", "version": "1.0", "status": to}
            ],
        }
        resp = await api.http.put("/v1/compatibility-matrix", json=change, headers=tsc)
        assert resp.status_code == 200, resp.text

    def body(pid: str) -> dict[str, Any]:
        shipped = manifest(os_version="4.2", api_version="2.1", workflows=[SYNC])
        return partner_body(pid, grants=[{**SYNC_GRANT, "permissions": []}], manifest=shipped)

    await status("deprecated")
    resp = await api.http.post("/v1/partners", json=body("acme"), headers=api.admin)
    assert resp.status_code == 201, resp.text
    await status("retired")
    resp = await api.http.post("/v1/partners", json=body("bolt"), headers=api.admin)
    assert resp.status_code == 422, resp.text
    assert "manifest.workflows.0.trigger" in str(resp.json()), resp.text


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"os_version": "5.0"}, {"manifest.os_version"}),
        ({"api_version": "3.0"}, {"manifest.api_version"}),
        ({"runtime": {"name": "kwanus-runtime", "version": "2.0"}}, {"manifest.runtime"}),
        ({"runtime": {"name": "Kwanus-Runtime", "version": "3.0"}}, {"manifest.runtime"}),
        (
            {"os_version": "5.0", "api_version": "3.0"},
            {"manifest.os_version", "manifest.api_version"},
        ),
    ],
)
async def test_a_registered_manifest_on_other_versions_is_refused(
    api: Api, changes: dict[str, Any], named: set[str]
) -> None:
    """Issue 20: a manifest's versions and runtime are the registration's — one record, never
    two: 422 naming each that differs, nothing stored."""
    shipped = manifest(**{"os_version": "4.2", "api_version": "2.1", **changes})
    body = partner_body("acme", manifest=shipped)
    resp = await api.http.post("/v1/partners", json=body, headers=api.admin)
    assert resp.status_code == 422, resp.text
    assert set(resp.json()["errors"]) == named, resp.text
    assert (await api.http.get("/v1/partners/acme", headers=api.admin)).status_code == 404
