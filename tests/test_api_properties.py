"""Property-level authorization (OWASP API3): request models forbid unknown fields and never
take server-owned ones (422, nothing stored or started); a reviewer's confidential notes never
reach the partner; what Temporal keeps unencrypted (search attributes, summaries) holds ids and
enums only."""

from __future__ import annotations

from typing import Any

from policy.vocabulary import Body
from testdata.factories import partner_body, proposal_body
from tests.apistack import Api, eventually, unique
from tests.test_api_expansion import review

SECRET = "the partner must never read this"


async def test_server_owned_fields_are_refused(api: Api) -> None:
    acme = await api.partner("acme")
    eid = unique("own")
    for field, value in (
        ("status", "completed"),
        ("stage", "Release"),
        ("votes", {"TSC": "approve"}),
        ("partner_id", "globex"),
        ("decision", {"outcome": "approved"}),
    ):
        body = {**proposal_body(id=eid), field: value}
        resp = await api.http.post("/v1/expansions", json=body, headers=acme)
        assert resp.status_code == 422, field
        assert field in resp.json()["errors"], field
    assert not await api.workflow_exists(f"expansion-{eid}")
    created = await api.http.post(
        "/v1/partners", json={**partner_body("globex"), "status": "active"}, headers=api.admin
    )
    assert created.status_code == 422 and "status" in created.json()["errors"]
    token = await api.http.post(
        "/v1/tokens", json={"role": "admin", "revoked_at": None}, headers=api.admin
    )
    assert token.status_code == 422


async def test_confidential_review_notes_stay_with_the_bodies(api: Api) -> None:
    acme = await api.partner("acme")
    tsc = api.token("TSC")
    eid = unique("conf")
    body = proposal_body(id=eid, description="Quarterly order trends for merchants")
    assert (await api.http.post("/v1/expansions", json=body, headers=acme)).status_code == 202
    base = f"/v1/expansions/{eid}"

    async def reviewing() -> bool:
        return bool((await api.http.get(base, headers=acme)).json()["step"] == "reviews")

    assert await eventually(reviewing)
    note = {**review(Body.TSC), "notes": "fine", "confidential_notes": SECRET}
    resp = await api.http.post(f"{base}/reviews", json=note, headers=tsc)
    assert resp.status_code == 200 and SECRET in resp.text  # the body sees its own notes

    async def reviewed(headers: dict[str, str], path: str) -> str | None:
        resp = await api.http.get(path, headers=headers)
        if resp.status_code != 200:
            return None
        data = resp.json()
        reviews = data.get("reviews") or data.get("decided", {}).get("reviews", {})
        return resp.text if "TSC" in reviews else None

    for path in (base, f"{base}/decision-record"):
        seen_by_partner = await eventually(lambda p=path: reviewed(acme, p))
        assert seen_by_partner and "fine" in seen_by_partner and SECRET not in seen_by_partner
        seen_by_body = await eventually(lambda p=path: reviewed(api.token("SCO"), p))
        assert seen_by_body and SECRET in seen_by_body
    audit = (await api.http.get("/v1/audit", headers=acme)).text
    assert SECRET not in audit

    desc = await api.env.client.get_workflow_handle(f"expansion-{eid}").describe()
    unencrypted: list[Any] = [desc.static_summary, desc.static_details]
    unencrypted += [v for _, v in desc.typed_search_attributes]
    assert not any("order trends" in str(v).lower() or SECRET in str(v) for v in unencrypted)
    await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("test over")
