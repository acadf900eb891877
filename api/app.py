"""The FastAPI application: one Temporal client and one database engine per process, made in
the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import APIRouter, Depends, FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from api import metrics, problems, processes
from api.console import views as console
from api.deps import no_unknown_query
from api.limits import BodyLimit, Buckets, KnownMethods, RateLimit
from api.request_id import RequestId
from api.routes import (
    audit,
    compatibility,
    deprecations,
    expansions,
    health,
    me,
    migrations,
    partners,
    policy,
    remediations,
    stewardship,
    tokens,
    webhooks,
)
from kwanus.settings import Settings, get_settings
from kwanus.telemetry import (
    ignore_callers_trace_context,
    request_span_without_query,
    temporal_plugins,
    tracing,
)
from kwanus.temporal import CONNECT_TIMEOUT
from store.db import Database
from store.tables import utcnow

DESCRIPTION = """KWANUS OS partner expansion and migration governance.

Every process is a durable Temporal workflow; this API starts them, sends the governance
bodies' reviews and votes to them, and reads their state. Errors are `application/problem+json`
(RFC 9457) with `errors` (field → message) and `rule` (an ID from the rule catalogue).
"""


def create_app(
    settings: Settings | None = None,
    *,
    temporal: Client | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """The API; `clock` is the time its business gauges judge a step overdue at (a test's
    server time)."""
    settings = settings or get_settings()
    traced = tracing(settings, "kwanus-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = Database(settings.database_url)
        # Lazy: the API starts (and /readyz reports) even while Temporal is still coming up; the
        # client connects on its first call and tries again on the next after a failed one.
        app.state.temporal = temporal or await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            connect_timeout=CONNECT_TIMEOUT,
            lazy=True,
            plugins=temporal_plugins(traced),
        )
        try:
            yield
        finally:
            app.state.db.dispose()
            if traced is not None:
                traced.force_flush()  # the spans still batched are sent

    app = FastAPI(
        title="KWANUS Partner Governance",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        # No 307 from `/x/` to `/x`: every path is exact (404 otherwise). The HTTP metrics label
        # a redirected request with the path asked for (prometheus-fastapi-instrumentator 8.1),
        # so each made-up `/console/<anything>/` or `/v1/expansions/<anything>/` was a series.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.auth_failures = Buckets(settings.auth_failures_per_minute)
    problems.install(app)
    processes.install(app)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(no_unknown_query)])
    for module in (
        partners,
        tokens,
        expansions,
        migrations,
        deprecations,
        remediations,
        policy,
        compatibility,
        me,
        stewardship,
        audit,
        webhooks,
    ):
        v1.include_router(module.router)
    v1.include_router(remediations.violations)
    app.include_router(v1)
    app.include_router(health.router)
    console.install(app)
    # Outermost first: a flood is refused before its bodies are read.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute)
    metrics.install(app, clock)
    app.add_middleware(KnownMethods)  # outside the metrics: no series for a made-up method
    app.add_middleware(RequestId)  # outermost: every answer and log line has its request id
    if traced is not None:  # off by default: then nothing is installed (no cost)
        ignore_callers_trace_context()
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=traced,
            excluded_urls=",".join(metrics.UNMEASURED),
            server_request_hook=request_span_without_query,
            # No span for each ASGI message: a body trickled in one-byte chunks was a span a
            # chunk, at the client's pace (the request's own span has its time).
            exclude_spans=["receive", "send"],
        )
    return app
