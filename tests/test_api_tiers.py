"""Tier lifecycle over HTTP (E-7): an upgrade proposal is checked against the partner's recorded
evidence at submission — each failed E-7.1 condition named, nothing started — and accepted when
every condition holds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import SQLModel, delete

from policy.vocabulary import ProcessKind, ProcessStatus, Severity
from store.tables import PendingAction, Process, TelemetryReport, utcnow
from testdata.factories import partner_body, process_state, proposal_body, record_process
from tests.apistack import Api, eventually, unique

DAY = timedelta(days=1)


async def report(api: Api, days_ago: int, success: float = 0.999, **usage: int) -> None:
    """The platform reports a week of acme's telemetry (E-7.1: the only evidence)."""
    end = utcnow() - days_ago * DAY
    body = {
        "period_start": (end - 7 * DAY).isoformat(),
        "period_end": end.isoformat(),
        "workflow_success_rate": success,
        "api_error_rate": 0.001,
        "permission_usage": usage or {"orders:read": 40},
    }
    resp = await api.http.post(
        "/v1/partners/acme/telemetry", json=body, headers=api.token("platform")
    )
    assert resp.status_code == 201, resp.text


def violation(api: Api, status: ProcessStatus) -> None:
    rid = unique("v")
    record_process(
        api.db,
        ProcessKind.REMEDIATION,
        rid,
        "acme",
        "opened",
        stage="Remediation",
        status=status,
        state=process_state(
            ProcessKind.REMEDIATION,
            rid,
            "acme",
            severity=Severity.MINOR,
            kind="retention",
            opened_at=utcnow() - 10 * DAY,
            status=status,
        ),
    )


def forget(api: Api, *tables: type[SQLModel]) -> None:
    """Take seeded evidence back off the record (the next condition is tested alone)."""
    with api.db.session() as session:
        for table in tables:
            session.execute(delete(table))
        session.commit()


async def test_upgrade_refused_for_each_condition_then_accepted(api: Api) -> None:
    """E-7.1: reliable workflows, clean compliance, minimal permissions — each checked against
    recorded data at submission, each failure named (the fourth, low risk, once assessed: see
    test_expansion_workflow); all holding, the proposal is accepted."""
    body = partner_body("acme", permissions=["orders:read", "orders:write"])
    assert (await api.http.post("/v1/partners", json=body, headers=api.admin)).status_code == 201
    acme = api.token("partner", "acme")
    upgrade = proposal_body(category="B", requested_tier="premier", migration_plan="dual run")

    async def refused() -> list[str]:
        resp = await api.http.post("/v1/expansions", json=upgrade, headers=acme)
        assert resp.status_code == 422, resp.text
        assert resp.json()["rule"] == "E-7.1"
        return sorted(resp.json()["errors"])

    # Nothing on record: neither reliability nor the use of its grants is shown.
    assert await refused() == ["permissions_minimal", "workflows_reliable"]
    for days_ago in (7, 21, 42, 60):
        await report(api, days_ago, success=0.95 if days_ago == 60 else 0.999)
    # one weak month drags the mean below 0.99 (not below E-7.2's floor: no forced downgrade);
    # orders:write is granted and never used
    assert await refused() == ["permissions_minimal", "workflows_reliable"]
    forget(api, TelemetryReport)
    for days_ago in (7, 21, 42):
        await report(api, days_ago)
    assert await refused() == ["permissions_minimal"]

    violation(api, ProcessStatus.ACTIVE)
    await report(api, 3, **{"orders:read": 5, "orders:write": 2})
    assert await refused() == ["compliance_clean"]  # an open remediation
    forget(api, Process, PendingAction)

    eid = unique("up")
    accepted = await api.http.post("/v1/expansions", json={**upgrade, "id": eid}, headers=acme)
    assert accepted.status_code == 202, accepted.text
    await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("test over")


async def test_instability_forces_one_downgrade(api: Api) -> None:
    """E-7.2 / M-2.3: telemetry showing failing workflows starts a forced tier-downgrade
    migration to the tier below; more bad reports while it runs start no second one; calls on a
    permission never granted are a security violation."""
    acme = await api.partner("acme")
    end = utcnow()
    bad = {
        "period_start": (end - 7 * DAY).isoformat(),
        "period_end": end.isoformat(),
        "workflow_success_rate": 0.8,
        "api_error_rate": 0.01,
        "permission_usage": {"orders:read": 10},
    }
    healthy = {**bad, "workflow_success_rate": 0.999}
    platform = api.token("platform")  # E-7.1: the evidence is the platform's
    ok = await api.http.post("/v1/partners/acme/telemetry", json=healthy, headers=platform)
    assert ok.status_code == 201 and ok.json()["downgrade"] is None
    resp = await api.http.post("/v1/partners/acme/telemetry", json=bad, headers=platform)
    assert resp.status_code == 201, resp.text
    downgrade = resp.json()["downgrade"]
    assert downgrade["started"] and downgrade["trigger"] == "partner_instability"
    assert [f["field"] for f in downgrade["findings"]] == ["workflow_failures"]
    mid = downgrade["migration_id"]

    async def running() -> dict[str, Any] | None:
        resp = await api.http.get(f"/v1/migrations/{mid}", headers=acme)
        return resp.json() if resp.status_code == 200 and resp.json()["step"] == "plan" else None

    state = await eventually(running)
    assert state and state["trigger_class"] == "forced" and state["target"] == {"tier": "community"}
    misuse = {**bad, "permission_usage": {"orders:write": 3}}
    again = await api.http.post("/v1/partners/acme/telemetry", json=misuse, headers=platform)
    second = again.json()["downgrade"]
    assert second["migration_id"] == mid and not second["started"]
    assert {f["field"] for f in second["findings"]} >= {"permission_misuse"}
    await api.env.client.get_workflow_handle(f"migration-{mid}").terminate("test over")
