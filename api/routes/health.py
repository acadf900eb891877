"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from temporalio.client import Client
from temporalio.service import RPCError

from store.db import Database

router = APIRouter(tags=["health"])

# Each check gets this long: a probe must answer while a dependency hangs rather than answers.
CHECK_TIMEOUT = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


def _select_one(db: Database) -> None:
    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


class NotServing(Exception):
    """The Temporal frontend answers but reports its workflow service as not serving."""


async def _temporal_health(client: Client) -> None:
    # The lazy client (api/app.py) connects on the first call, and again after a failed one.
    if not await client.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT)):
        raise NotServing


async def _check(probe: Awaitable[None]) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
    except TimeoutError:
        return f"down: no answer in {CHECK_TIMEOUT:g} s"
    except RPCError as exc:  # e.g. UNAVAILABLE, DEADLINE_EXCEEDED
        return f"down: {exc.status.name}"
    except Exception as exc:  # readiness reports any failure rather than raising it
        return f"down: {type(exc).__name__}"
    return "ok"


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the database and Temporal both answer (503 naming what is down)."""
    # In a thread: a blocking connect must not stall the event loop, and the two checks run
    # side by side, so the answer comes within CHECK_TIMEOUT.
    database, temporal = await asyncio.gather(
        _check(asyncio.to_thread(_select_one, request.app.state.db)),
        _check(_temporal_health(request.app.state.temporal)),
    )
    checks = {"database": database, "temporal": temporal}
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
