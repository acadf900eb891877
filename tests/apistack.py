"""The API as tests drive it: the real FastAPI app, a real worker and the dev server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from kwanus.settings import Settings
from store import repo
from store.db import Database
from store.schemas import TokenCreate
from testdata.factories import partner_body
from tests.conftest import running_worker


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Api:
    http: httpx.AsyncClient
    env: WorkflowEnvironment
    db: Database
    admin: dict[str, str]
    settings: Settings
    transport: httpx.AsyncBaseTransport | None = None

    def token(self, role: str, partner_id: str | None = None) -> dict[str, str]:
        with self.db.session() as session:
            created = repo.create_token(
                session=session, token=TokenCreate(role=role, partner_id=partner_id)
            )
        return {"Authorization": f"Bearer {created.token}"}

    async def partner(self, partner_id: str) -> dict[str, str]:
        resp = await self.http.post(
            "/v1/partners", json=partner_body(partner_id), headers=self.admin
        )
        assert resp.status_code == 201, resp.text
        return self.token("partner", partner_id)

    async def platform_reports(
        self, partner_id: str, usage: dict[str, int], weeks_ago: tuple[int, ...] = (1, 3, 5)
    ) -> None:
        """Healthy weekly reports by the platform (E-7.1: the only evidence) — of reliable
        workflows, and of the permissions in `usage` in use."""
        platform = self.token("platform")
        for weeks in weeks_ago:
            end = datetime.now(UTC) - timedelta(weeks=weeks)
            report = {
                "period_start": (end - timedelta(days=7)).isoformat(),
                "period_end": end.isoformat(),
                "workflow_success_rate": 0.999,
                "api_error_rate": 0.001,
                "permission_usage": usage,
                "calls_by_version": {"api:2.1": 1523},
            }
            resp = await self.http.post(
                f"/v1/partners/{partner_id}/telemetry", json=report, headers=platform
            )
            assert resp.status_code == 201, resp.text

    async def workflow_exists(self, workflow_id: str) -> bool:
        try:
            await self.env.client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True


@asynccontextmanager
async def serving(env: WorkflowEnvironment, db: Database, **settings: Any) -> AsyncIterator[Api]:
    """The API and a worker (with its webhook dispatcher) on `env`, with Settings `settings`
    (the worker takes `webhooks_allow_private` from them too)."""
    allow_private = bool(settings.get("webhooks_allow_private", False))
    async with running_worker(env.client, db, webhooks_allow_private=allow_private) as task_queue:
        config = Settings(database_url=db.url, task_queue=task_queue, **settings)
        async with api_alone(env, db, config) as stack:
            yield stack


@asynccontextmanager
async def api_alone(env: WorkflowEnvironment, db: Database, config: Settings) -> AsyncIterator[Api]:
    """The API with `config` and no worker of its own (its worker runs elsewhere, or none)."""
    app = create_app(config, temporal=env.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kwanus") as http:
            with db.session() as session:
                admin = repo.create_token(session=session, token=TokenCreate(role="admin"))
            yield Api(http, env, db, {"Authorization": f"Bearer {admin.token}"}, config, transport)


@pytest.fixture
async def api(dev_env: WorkflowEnvironment, db: Database) -> AsyncIterator[Api]:
    async with serving(dev_env, db) as stack:
        yield stack


async def eventually(check: Any, within: float = 15.0) -> Any:
    """Poll `check()` until it returns a truthy value (visibility is eventually consistent)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within
    while True:
        value = await check()
        if value or loop.time() > give_up:
            return value
        await asyncio.sleep(0.2)
