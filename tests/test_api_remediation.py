"""Violations and remediation through the HTTP API on the dev server (M-9)."""

from __future__ import annotations

from typing import Any

from store.tables import Partner
from tests.apistack import Api, eventually, unique


async def test_severe_violation_restricts_then_remediation_restores(api: Api) -> None:
    """M-9.2: SCO reports a severe violation → access restricted at once; M-9.1: the partner's
    root cause, plan, fixes, then SCO's re-validation restore full access. Only SCO reports."""
    acme = await api.partner("acme")
    sco = api.token("SCO")
    rid = unique("rem")
    violation = {"id": rid, "kind": "data_leak", "severity": "severe", "description": "leak"}
    assert (
        await api.http.post("/v1/partners/acme/violations", json=violation, headers=acme)
    ).status_code == 403
    resp = await api.http.post("/v1/partners/acme/violations", json=violation, headers=sco)
    assert resp.status_code == 202, resp.text
    base = f"/v1/remediations/{rid}"

    async def at(step: str | None) -> dict[str, Any] | None:
        data: dict[str, Any] = (await api.http.get(base, headers=acme)).json()
        return data if data["step"] == step else None

    state = await eventually(lambda: at("root_cause"))
    assert state["restricted"]
    with api.db.session() as session:
        partner = session.get(Partner, "acme")
        assert partner is not None and partner.status == "restricted"
    out_of_order = await api.http.post(f"{base}/fixes", json={"summary": "x"}, headers=acme)
    assert out_of_order.status_code == 409 and out_of_order.json()["rule"] == "M-9.1"
    for path in ("root-cause", "plan", "fixes"):
        resp = await api.http.post(f"{base}/{path}", json={"summary": path}, headers=acme)
        assert resp.status_code == 200, resp.text
    by_partner = await api.http.post(
        f"{base}/review", json={"summary": "ok", "passed": True}, headers=acme
    )
    assert by_partner.status_code == 403
    resp = await api.http.post(
        f"{base}/review", json={"summary": "ok", "passed": True}, headers=sco
    )
    assert resp.status_code == 200

    async def closed() -> dict[str, Any] | None:
        data: dict[str, Any] = (await api.http.get(base, headers=acme)).json()
        return data if data["status"] == "completed" else None

    await eventually(closed)
    with api.db.session() as session:
        partner = session.get(Partner, "acme")
        assert partner is not None and partner.status == "active"
