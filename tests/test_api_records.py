"""Decision records over HTTP on the dev server: one exportable document per process, served from
the store — the same after the workflow is terminated as while it ran, and 404 to another
partner."""

from __future__ import annotations

from typing import Any

from kwanus.hashing import canonical_sha256
from policy.proposal import Proposal
from policy.vocabulary import Body
from testdata.factories import proposal_body
from tests.apistack import Api, eventually, unique
from tests.test_api_expansion import review


async def test_expansion_record_survives_termination(api: Api) -> None:
    acme = await api.partner("acme")
    beta = await api.partner("beta")
    tsc = api.token("TSC")
    eid = unique("rec")
    base = f"/v1/expansions/{eid}"
    body = proposal_body(id=eid)
    assert (await api.http.post("/v1/expansions", json=body, headers=acme)).status_code == 202

    async def reviewing() -> dict[str, Any] | None:
        data: dict[str, Any] = (await api.http.get(base, headers=acme)).json()
        return data if data["step"] == "reviews" else None

    assert await eventually(reviewing)
    tsc_review = {**review(Body.TSC), "notes": "fits the architecture"}
    assert (await api.http.post(f"{base}/reviews", json=tsc_review, headers=tsc)).status_code == 200

    async def recorded() -> dict[str, Any] | None:
        resp = await api.http.get(f"{base}/decision-record", headers=acme)
        data: dict[str, Any] = resp.json()
        return data if resp.status_code == 200 and "TSC" in data["decided"]["reviews"] else None

    running = await eventually(recorded)
    assert running, "the review never reached the record"
    proposal = Proposal.model_validate({k: v for k, v in body.items() if k != "id"})
    assert running["subject_sha256"] == canonical_sha256(proposal)
    assert running["decided"]["reviews"]["TSC"]["review"]["notes"] == "fits the architecture"
    assert running["actors"][:2] == ["partner:acme", "TSC"]
    assert {"E-2.1", "E-4.1"} <= set(running["rules"])
    assert running["policy_version"] == 1 and running["opened_at"]
    assert running["events"][0]["event"] == "submitted"

    await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("ops cleanup")
    after = await api.http.get(f"{base}/decision-record", headers=acme)
    assert after.status_code == 200 and after.json() == running
    assert (await api.http.get(f"{base}/decision-record", headers=beta)).status_code == 404
    unknown = await api.http.get("/v1/migrations/nope/decision-record", headers=tsc)
    assert unknown.status_code == 404


async def test_remediation_record_names_severity_and_steps(api: Api) -> None:
    acme = await api.partner("acme")
    sco = api.token("SCO")
    rid = unique("rem")
    violation = {"id": rid, "kind": "retention", "severity": "minor", "description": "logs kept"}
    resp = await api.http.post("/v1/partners/acme/violations", json=violation, headers=sco)
    assert resp.status_code == 202, resp.text

    async def opened() -> dict[str, Any] | None:
        resp = await api.http.get(f"/v1/remediations/{rid}/decision-record", headers=acme)
        return resp.json() if resp.status_code == 200 else None

    record = await eventually(opened)
    assert record and record["kind"] == "remediation"
    assert record["decided"]["severity"] == "minor" and record["decided"]["deadline"]
    assert "M-9.2" in record["rules"] and record["actors"][0] == "SCO"
    await api.env.client.get_workflow_handle(f"remediation-{rid}").terminate("test over")
