"""Deprecation notices through the HTTP API on the dev server: one notice → one required migration
per affected partner (M-2.1), fanned out page by page; the same notice sent twice, or a page
run again, starts nothing new (P-1)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from sqlmodel import col, select
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment

from activities.processes import ProcessStarter
from kwanus.models.deprecation import DeprecationBatch
from policy.deprecation import DeprecationNotice
from policy.document import DEFAULT_POLICY
from store import repo
from store.schemas import PartnerCreate
from store.tables import Process
from testdata.factories import partner_body
from tests.apistack import Api, eventually
from tests.conftest import end_runs

AFFECTED = 50


def seed_partners(api: Api, version: str) -> list[str]:
    """50 partners on the deprecated API version, 5 on another (not affected)."""
    ids = [f"p{i:03d}" for i in range(AFFECTED + 5)]
    with api.db.session() as session:
        for i, pid in enumerate(ids):
            repo.create_partner(
                session=session,
                partner=PartnerCreate.model_validate(
                    partner_body(pid, api_version=version if i < AFFECTED else "9.0")
                ),
            )
    return ids[:AFFECTED]


def migrations(api: Api, notice_id: str) -> list[Process]:
    with api.db.session() as session:
        return list(
            session.exec(
                select(Process).where(
                    col(Process.workflow_id).startswith(f"migration-{notice_id}.")
                )
            ).all()
        )


async def test_notice_sent_twice_starts_one_migration_per_partner(
    api: Api, request: pytest.FixtureRequest
) -> None:
    """M-2.1: a deprecation notice to 50 partners, sent twice → 50 migrations, not 100; each a
    required migration with its notice and fallback first (M-4.1); a page run again (a retried
    activity) starts none."""
    version = f"2.{uuid.uuid4().int % 10**6}"
    affected = seed_partners(api, version)
    api.settings.fanout_batch_size = 16  # several pages, the last one partial
    tsc = api.token("TSC")
    body = {"kind": "api", "version": version, "replacement": "3.0"}
    first = await api.http.post("/v1/deprecations", json=body, headers=tsc)
    assert first.status_code == 202, first.text
    notice_id = first.json()["id"]
    assert notice_id == f"api-kwanus-{version.replace('.', '_')}"
    again = await api.http.post("/v1/deprecations", json=body, headers=tsc)
    assert again.status_code == 202 and again.json()["id"] == notice_id

    async def fanned_out() -> dict[str, Any] | None:
        resp = await api.http.get(f"/v1/deprecations/{notice_id}", headers=tsc)
        data: dict[str, Any] = resp.json()
        return data if data.get("status") == "completed" else None

    state = await eventually(fanned_out, within=60)
    assert state, "the fan-out never completed"
    assert state["progress"] == {"scanned": 55, "affected": 50, "started": 50, "batches": 4}
    try:

        async def all_noticed() -> bool:
            return len(migrations(api, notice_id)) == AFFECTED

        noticed = await eventually(all_noticed, within=60)
        assert noticed, f"{len(migrations(api, notice_id))} migrations recorded their notice"
        # Sent a third time, after the fan-out: still the same 50.
        third = await api.http.post("/v1/deprecations", json=body, headers=tsc)
        assert third.status_code == 202 and third.json()["id"] == notice_id
        rows = migrations(api, notice_id)
        assert sorted(r.partner_id for r in rows) == affected
        assert all(r.state and r.state["trigger"] == "api_deprecation" for r in rows)
        assert all(r.state and r.state["fallback"]["active"] for r in rows)
        assert all(r.state and r.state["target"] == {"api_version": "3.0"} for r in rows)

        # A page run again — as a retried activity would — finds every migration started.
        starter = ProcessStarter(api.env.client, api.settings.task_queue, api.db)
        replay = await ActivityEnvironment().run(
            starter.start_deprecation_batch,
            DeprecationBatch(
                notice_id=notice_id,
                notice=DeprecationNotice.model_validate(body),
                policy=DEFAULT_POLICY,
                requested_by="TSC",
                origin=f"deprecation-{notice_id}",
                after=None,
                limit=100,
            ),
        )
        assert (replay.affected, replay.started) == (50, 0)
        listed = await api.http.get("/v1/deprecations", headers=tsc)
        assert [d["id"] for d in listed.json()] == [notice_id]
    finally:
        async with asyncio.TaskGroup() as group:
            for pid in affected:
                group.create_task(_terminate(api, f"migration-{notice_id}.{pid}"))
        await end_runs(api.env.client, [f"deprecation-{notice_id}"], request.node.name)


async def _terminate(api: Api, workflow_id: str) -> None:
    with contextlib.suppress(RPCError):
        await api.env.client.get_workflow_handle(workflow_id).terminate("test over")


async def test_notice_refusals_name_the_field_and_rule(api: Api) -> None:
    """Only TSC sends notices; an incomplete notice or a short fallback is refused with the
    field and rule named (M-2.1, M-6.2), and nothing starts."""
    partner = await api.partner("acme")
    tsc = api.token("TSC")
    body = {"kind": "os", "version": "4.2", "replacement": "5.0"}
    for who in (partner, api.token("SCO"), api.token("ops")):
        assert (await api.http.post("/v1/deprecations", json=body, headers=who)).status_code == 403
    resp = await api.http.post(
        "/v1/deprecations", json={"kind": "runtime", "name": "kwanus-runtime"}, headers=tsc
    )
    assert resp.status_code == 422, resp.text
    errors = resp.json()["errors"]
    assert set(errors) == {"version", "replacement"}
    assert all("M-2.1" in message for message in errors.values())
    resp = await api.http.post("/v1/deprecations", json={**body, "fallback_months": 5}, headers=tsc)
    assert resp.status_code == 422 and resp.json()["rule"] == "M-6.2"
    assert not await api.workflow_exists("deprecation-os-kwanus-4_2")
    resp = await api.http.post("/v1/deprecations", json={**body, "status": "done"}, headers=tsc)
    assert resp.status_code == 422
