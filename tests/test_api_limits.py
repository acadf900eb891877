"""Resource limits (OWASP API4), each with its status: body cap 413 before anything reaches
Temporal, per-token rate limit 429 with Retry-After, page-size cap 422, the policy's cap on open
proposals per partner 429."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from kwanus.settings import Settings
from policy.document import DEFAULT_POLICY
from store.db import Database
from testdata.factories import proposal_body
from tests.apistack import Api, eventually, unique


async def small_app(
    dev_env: WorkflowEnvironment, db: Database, api: Api, **limits: int
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=db.url, task_queue=api.settings.task_queue, **limits)
    app = create_app(settings, temporal=dev_env.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kwanus") as http:
            yield http


async def test_body_cap_is_413_and_starts_nothing(
    api: Api, dev_env: WorkflowEnvironment, db: Database
) -> None:
    acme = await api.partner("acme")
    eid = unique("big")
    body = proposal_body(id=eid, description="x" * 4000)
    async for http in small_app(dev_env, db, api, max_body_bytes=2048):
        resp = await http.post("/v1/expansions", json=body, headers=acme)
        assert resp.status_code == 413, resp.text
        assert resp.headers["content-type"] == "application/problem+json"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
            for _ in range(4):
                yield b" " * 1024

        streamed = await http.post(
            "/v1/expansions", content=chunks(), headers={**acme, "content-type": "application/json"}
        )
        assert streamed.status_code == 413
    assert not await api.workflow_exists(f"expansion-{eid}")


async def test_rate_limit_is_per_token_with_retry_after(
    api: Api, dev_env: WorkflowEnvironment, db: Database
) -> None:
    ops, other = api.token("ops"), api.token("TSC")
    async for http in small_app(dev_env, db, api, rate_limit_per_minute=3):
        for _ in range(3):
            assert (await http.get("/v1/partners", headers=ops)).status_code == 200
        limited = await http.get("/v1/partners", headers=ops)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert (await http.get("/v1/partners", headers=other)).status_code == 200
        assert (await http.get("/healthz")).status_code == 200  # probes are never limited


async def test_page_size_is_capped(api: Api) -> None:
    ops = api.token("ops")
    for path in ("/v1/expansions", "/v1/migrations", "/v1/partners", "/v1/me/pending"):
        resp = await api.http.get(path, params={"limit": 501}, headers=ops)
        assert resp.status_code == 422, path
        assert "limit" in str(resp.json()["errors"])
        assert (await api.http.get(path, params={"limit": 500}, headers=ops)).status_code == 200


async def test_open_proposals_are_capped_by_the_policy(api: Api) -> None:
    acme = await api.partner("acme")
    doc = DEFAULT_POLICY.model_dump(mode="json", exclude={"version"})
    doc["max_open_proposals_per_partner"] = 1
    assert (await api.http.put("/v1/policy", json=doc, headers=api.admin)).status_code == 200
    first = proposal_body(id=unique("one"))
    assert (await api.http.post("/v1/expansions", json=first, headers=acme)).status_code == 202

    async def recorded() -> bool:
        rows = (await api.http.get("/v1/expansions", headers=acme)).json()
        return bool(rows)

    assert await eventually(recorded)
    second = await api.http.post(
        "/v1/expansions", json=proposal_body(id=unique("two")), headers=acme
    )
    assert second.status_code == 429 and "max_open_proposals_per_partner" in second.text
    again = await api.http.post("/v1/expansions", json=first, headers=acme)
    assert again.status_code == 202  # the open one, asked for again, is still answered
    await api.env.client.get_workflow_handle(f"expansion-{first['id']}").terminate("test over")


async def test_nul_characters_are_refused_up_front(api: Api) -> None:
    """Hostile input no text store takes (PostgreSQL refuses NUL): 422 before any route runs."""
    acme = await api.partner("acme")
    eid = unique("nul")
    body = proposal_body(id=eid, description="order\u0000trends")
    resp = await api.http.post("/v1/expansions", json=body, headers=acme)
    assert resp.status_code == 422 and "NUL" in resp.json()["detail"]
    assert not await api.workflow_exists(f"expansion-{eid}")
    query = await api.http.get("/v1/expansions?status=active%00", headers=acme)
    assert query.status_code == 422
