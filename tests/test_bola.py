"""Object-level authorization (OWASP API1, BOLA): partner B calls every `{id}` route on partner
A's expansion, migration and remediation — reads, steps, decision records — and A's partner
routes: each is 404 with nothing of A in the answer; every list and the audit log are filtered
to the caller."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from kwanus.models.common import Awaiting
from kwanus.temporal import start_process
from policy.vocabulary import ProcessKind
from store.tables import WebhookSubscription, utcnow
from testdata.factories import (
    IMPLEMENTATION,
    INTEGRATION_PLAN,
    MIGRATION_DOCS,
    MIGRATION_IMPLEMENTATION,
    MIGRATION_PLAN,
    RELEASE,
    ROLLOUT,
    record_process,
)
from tests.apistack import Api, unique

MATRIX = yaml.safe_load((Path(__file__).parent / "data" / "authz.yaml").read_text())
IDS = {
    "{expansion_id}": "a-secret-exp",
    "{migration_id}": "a-secret-mig",
    "{remediation_id}": "a-secret-rem",
    "{partner_id}": "alpha",
    "{subscription_id}": "a-secret-whk",
}
# A valid body for each partner step, so what answers is the ownership check, not validation.
BODIES: dict[str, dict[str, Any]] = {
    "plans": {"risk_mitigation": "r"},
    "integration-plan": INTEGRATION_PLAN,
    "implementation": IMPLEMENTATION,
    "release": RELEASE,
    "withdraw": {},
    "decline": {},
    "plan": MIGRATION_PLAN,
    "documentation": MIGRATION_DOCS,
    "rollout": ROLLOUT,
    "telemetry": {
        "period_start": "2026-01-01T00:00:00Z",
        "period_end": "2026-01-08T00:00:00Z",
        "workflow_success_rate": 0.999,
        "api_error_rate": 0.001,
    },
}


def seed_alpha(api: Api) -> None:
    for kind, pid in (
        (ProcessKind.EXPANSION, IDS["{expansion_id}"]),
        (ProcessKind.MIGRATION, IDS["{migration_id}"]),
        (ProcessKind.REMEDIATION, IDS["{remediation_id}"]),
    ):
        record_process(
            api.db,
            kind,
            pid,
            "alpha",
            "opened",
            awaiting=[Awaiting(actor="partner:alpha", action="secret step")],
            state={"id": pid, "partner_id": "alpha", "notes": "alpha's secret"},
        )
    # A step opened for alpha: a notification in alpha's inbox (P-7) ...
    record_process(
        api.db,
        ProcessKind.MIGRATION,
        IDS["{migration_id}"],
        "alpha",
        "window:plan",
        event="window_opened",
        awaiting=[Awaiting(actor="partner:alpha", action="secret step")],
        data={"step": "plan"},
    )
    # ... and alpha's webhook.
    with api.db.session() as session:
        session.add(
            WebhookSubscription(
                id=IDS["{subscription_id}"],
                owner="partner:alpha",
                url="https://93.184.216.34/alpha-secret",
                events=[],
                secret="whsec_c2VjcmV0",
                created_by="partner:alpha",
                created_at=utcnow(),
            )
        )
        session.commit()


async def test_partner_b_sees_nothing_of_partner_a(api: Api) -> None:
    alpha = await api.partner("alpha")
    beta = await api.partner("beta")
    seed_alpha(api)
    # What beta must not see is there: alpha's inbox and webhooks hold it.
    mine = (await api.http.get("/v1/notifications", headers=alpha)).json()
    assert [n["type"] for n in mine] == ["step.opened"]
    assert [w["id"] for w in (await api.http.get("/v1/webhooks", headers=alpha)).json()] == [
        IDS["{subscription_id}"]
    ]
    checked = []
    for op, rule in sorted(MATRIX["operations"].items()):
        method, path = op.split(" ", 1)
        if rule.get("public") or "partner" not in rule["allow"]:
            continue
        if not any(key in path for key in IDS):
            continue
        url = path
        for key, value in IDS.items():
            url = url.replace(key, value)
        step = path.rsplit("/", 1)[-1]
        body = (
            ({"summary": "s"} if "/remediations/" in path else BODIES.get(step))
            if method == "POST"
            else None
        )
        if path.startswith("/v1/migrations/") and step == "implementation":
            body = MIGRATION_IMPLEMENTATION  # M-8.1: with its manifest
        resp = await api.http.request(method, url, headers=beta, json=body)
        checked.append(op)
        assert resp.status_code == 404, f"{op}: {resp.status_code} {resp.text}"
        answer = {k: v for k, v in resp.json().items() if k != "instance"}  # echoes the URL
        assert "alpha" not in str(answer) and "secret" not in str(answer), op
    assert len(checked) >= 20, checked
    for listing in (
        "/v1/expansions",
        "/v1/migrations",
        "/v1/me/pending",
        "/v1/partners",
        "/v1/notifications",
        "/v1/webhooks",
    ):
        text = (await api.http.get(listing, headers=beta)).text
        assert "alpha" not in text and "secret" not in text, listing
    for query in ({"partner_id": "alpha"}, {"workflow_id": "expansion-a-secret-exp"}, {}):
        text = (await api.http.get("/v1/audit", params=query, headers=beta)).text
        assert "alpha" not in text and "secret" not in text, query
    print(f"BOLA: {len(checked)} operations on another partner's records, all 404")


async def test_a_run_not_yet_recorded_is_owned_by_its_partner(api: Api) -> None:
    """A step sent before a process's first event reaches the store is judged by the partner
    the run was started for (its search attribute: the server answers, no worker needed), so
    partner B gets 404 at once even when no worker could answer a query."""
    await api.partner("alpha")
    beta = await api.partner("beta")
    mid = unique("unrecorded")
    await start_process(
        api.env.client,
        "PartnerMigration",
        {},  # never run: no worker polls this task queue
        workflow_id=f"migration-{mid}",
        task_queue="nobody-polls-this",
        partner_id="alpha",
        kind="migration",
        stage="Notice",
        summary="a run the store has not seen",
    )
    try:
        url = f"/v1/migrations/{mid}/plan"
        started = asyncio.get_running_loop().time()
        resp = await api.http.post(url, json=BODIES["plan"], headers=beta)
        assert resp.status_code == 404, resp.text
        assert asyncio.get_running_loop().time() - started < 2  # no 5 s query timeout
        gone = await api.http.post(
            "/v1/migrations/never-started/plan", json=BODIES["plan"], headers=beta
        )
        assert gone.status_code == 404
    finally:
        await api.env.client.get_workflow_handle(f"migration-{mid}").terminate("over")
