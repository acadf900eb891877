"""Ops see it coming (issue 23): the worker's and the API's Prometheus endpoints scraped over
HTTP after a short process, and one trace from a vote's request through its Update to the
activity that records it, exported with OTLP to a collector in this process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from api import metrics
from api.app import create_app
from app.worker import WORKFLOW_RUNNER, WORKFLOWS
from kwanus.settings import Settings
from kwanus.telemetry import temporal_plugins, tracing, worker_runtime
from kwanus.temporal import connect
from policy.vocabulary import Body
from store import repo
from store.db import Database
from store.schemas import TokenCreate
from store.tables import utcnow
from testdata.factories import partner_body, proposal_body, review
from testdata.otlp import Span, collecting
from tests.apistack import eventually, unique
from tests.conftest import running_worker
from tests.processes import free_port, kwanus_api, kwanus_worker, product_env
from tests.receiver import Receiver

BODIES = [b.value for b in Body]


def target(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Scrape:
    """Every sample of a scrape: (name, labels) → value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return scraped.get((name, frozenset(labels.items())))


async def scrape(port: int) -> Scrape:
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert resp.status_code == 200, resp.text
    return samples(resp.text)


def token(db: Database, role: str, partner_id: str | None = None) -> dict[str, str]:
    with db.session() as session:
        created = repo.create_token(
            session=session, token=TokenCreate(role=role, partner_id=partner_id)
        )
    return {"Authorization": f"Bearer {created.token}"}


@asynccontextmanager
async def http_to(
    settings: Settings, **app_args: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(settings, **app_args)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kwanus") as http:
            yield http, app


async def test_the_worker_and_the_api_serve_the_sdk_http_and_business_series(
    ts_env: WorkflowEnvironment, db: Database
) -> None:
    """One expansion waiting in Evaluation: the worker's endpoint has the Temporal SDK's own
    series, the API's the HTTP series of the requests made and the business gauges — the
    expansion open in Evaluation, a review awaited from each body, none overdue; after 15 days
    (time skipped) the four reviews are overdue and the oldest has waited 15 days."""
    worker_port, api_port = free_port(), free_port()
    base = Settings(
        database_url=db.url,
        temporal_address=target(ts_env),
        worker_metrics_port=worker_port,
        api_metrics_port=api_port,
        webhooks_allow_private=True,
    )
    hook = Receiver(answers=[500] * 10_000)  # TSC's receiver is down
    client = await connect(base, wait=10, runtime=worker_runtime(base))
    now = [utcnow()]
    async with running_worker(client, db) as task_queue:
        settings = Settings(**{**base.model_dump(), "task_queue": task_queue})
        async with http_to(settings, temporal=ts_env.client, clock=lambda: now[0]) as (http, app):
            served = metrics.serve(app.state.metrics, settings)
            assert served is not None
            try:
                admin = token(db, "admin")
                assert (
                    await http.post("/v1/partners", json=partner_body("acme"), headers=admin)
                ).status_code == 201
                acme = token(db, "partner", "acme")
                subscribed = await http.post(
                    "/v1/webhooks", json={"url": hook.url, "body": "TSC"}, headers=admin
                )
                assert subscribed.status_code == 201, subscribed.text
                eid = unique("obs")
                resp = await http.post("/v1/expansions", json=proposal_body(id=eid), headers=acme)
                assert resp.status_code == 202, resp.text
                assert resp.json()["step"] == "reviews"
                assert (await http.get("/v1/nowhere", headers=acme)).status_code == 404
                for probe in ("/healthz", "/readyz"):
                    assert (await http.get(probe)).status_code in (200, 503)

                api = await scrape(api_port)
                assert value(api, "kwanus_store_up") == 1
                assert (
                    value(api, "kwanus_processes_open", kind="expansion", stage="Evaluation") == 1
                )
                for body in BODIES:
                    assert value(api, "kwanus_steps_waiting", actor=body) == 1, body
                    assert value(api, "kwanus_steps_overdue", actor=body) == 0, body
                assert value(api, "kwanus_webhook_subscriptions_disabled") == 0
                posted = {"handler": "/v1/expansions", "method": "POST", "status": "202"}
                assert value(api, "http_requests_total", **posted) == 1
                assert (
                    value(
                        api,
                        "http_request_duration_seconds_count",
                        handler="/v1/expansions",
                        method="POST",
                    )
                    == 1
                )
                # The probes are not measured (a scrape every few seconds each would drown the
                # requests that matter).
                probed = {labels for name, labels in api if name == "http_requests_total"}
                assert not [p for p in probed if ("handler", "/healthz") in p], probed
                assert not [p for p in probed if ("handler", "/readyz") in p], probed
                # An unknown path is one series ("none"), not one per path tried.
                assert (
                    value(api, "http_requests_total", handler="none", method="GET", status="404")
                    == 1
                )

                worker = await scrape(worker_port)
                names = {name for name, _ in worker}
                assert any(
                    n.startswith("temporal_workflow_task_schedule_to_start_latency") for n in names
                ), sorted(names)
                assert any(n.startswith("temporal_activity_execution_latency") for n in names), (
                    sorted(names)
                )
                completed = [
                    v
                    for (name, labels), v in worker.items()
                    if name == "temporal_workflow_task_execution_latency_count"
                    and ("workflow_type", "PartnerExpansion") in labels
                ]
                assert completed and completed[0] >= 1, sorted(
                    (n, sorted(labels)) for n, labels in worker if "workflow_task" in n
                )

                # The review's notification to TSC failed and is retried.
                async def failing() -> float | None:
                    scraped = await scrape(api_port)
                    return value(scraped, "kwanus_webhook_deliveries_failing")

                assert await eventually(failing) == 1
                # The reviews' 14 days pass: each body's review is overdue.
                await ts_env.sleep(timedelta(days=15))
                now[0] = await ts_env.get_current_time()

                async def overdue() -> dict[str, float | None]:
                    scraped = await scrape(api_port)
                    late = {b: value(scraped, "kwanus_steps_overdue", actor=b) for b in BODIES}
                    return late if all(late.values()) else {}

                late = await eventually(overdue)
                assert late == {b: 1 for b in BODIES}, late
                api = await scrape(api_port)
                oldest = value(api, "kwanus_oldest_waiting_step_seconds", actor="TSC")
                assert oldest is not None and oldest >= timedelta(days=15).total_seconds()
                # Its delivery failed for a whole day of retries: given up, and the
                # subscription disabled (P-7).
                assert value(api, "kwanus_webhook_deliveries_given_up") == 1
                assert value(api, "kwanus_webhook_subscriptions_disabled") == 1
            finally:
                served[0].shutdown()
                served[0].server_close()
                hook.close()
    await ts_env.client.get_workflow_handle(f"expansion-{eid}").terminate("test over")


def _ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    chain = []
    while span.parent_id and span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


async def test_one_trace_from_a_vote_through_its_update_to_the_activity_that_records_it(
    dev_env: WorkflowEnvironment, db: Database, tmp_path: Path
) -> None:
    """Tracing on (KWANUS_OTLP_ENDPOINT) in `kwanus api` and `kwanus worker`, each its own
    process: the API's span for `POST …/votes`, its Update's call, the worker's handling of the
    Update and the activity recording the vote are one trace — each span the parent of the
    next — received by a collector in this process over OTLP/HTTP."""
    eid = unique("trace")
    with collecting() as collector:
        env = product_env(
            dev_env,
            db.url,
            tmp_path,
            KWANUS_OTLP_ENDPOINT=collector.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",  # export every 0.1 s, not 5 s
        )
        try:
            async with (
                kwanus_worker(env, tmp_path / "worker.log"),
                kwanus_api(env, tmp_path / "api.log") as http,
            ):
                admin = token(db, "admin")
                assert (
                    await http.post("/v1/partners", json=partner_body("acme"), headers=admin)
                ).status_code == 201
                acme = token(db, "partner", "acme")
                bodies = {b: token(db, b.value) for b in Body}
                path = f"/v1/expansions/{eid}"
                resp = await http.post("/v1/expansions", json=proposal_body(id=eid), headers=acme)
                assert resp.status_code == 202, resp.text
                for body, headers in bodies.items():
                    resp = await http.post(f"{path}/reviews", json=review(body), headers=headers)
                    assert resp.status_code == 200, resp.text
                assert resp.json()["step"] == "votes", resp.text
                vote = {"decision": "approve", "rationale": "sound"}
                resp = await http.post(f"{path}/votes", json=vote, headers=bodies[Body.TSC])
                assert resp.status_code == 200, resp.text

                async def recorded() -> list[Span]:
                    votes = [
                        s
                        for s in collector.received()
                        if s.service == "kwanus-api"
                        and s.name == "POST /v1/expansions/{expansion_id}/votes"
                    ]
                    if not votes:
                        return []
                    by_id = {s.span_id: s for s in collector.trace(votes[0].trace_id)}
                    return [
                        s
                        for s in by_id.values()
                        if s.name == "RunActivity:record_event"
                        and any(a.name == "HandleUpdate:vote" for a in _ancestors(s, by_id))
                    ]

                found = await eventually(recorded)
        finally:
            handle = dev_env.client.get_workflow_handle(f"expansion-{eid}")
            await handle.terminate("test over")
        # Tracing adds headers, never a command: the traced run replays without it.
        await Replayer(
            workflows=WORKFLOWS,
            data_converter=pydantic_data_converter,
            workflow_runner=WORKFLOW_RUNNER,
        ).replay_workflow(await handle.fetch_history())
        assert found, sorted((s.service, s.name, s.trace_id[:8]) for s in collector.received())
        spans = collector.trace(found[0].trace_id)
        by_id = {s.span_id: s for s in spans}
        chain = [(s.service, s.name) for s in reversed(_ancestors(found[0], by_id))]
        chain.append((found[0].service, found[0].name))
        assert chain[0] == ("kwanus-api", "POST /v1/expansions/{expansion_id}/votes"), chain
        assert ("kwanus-api", "StartWorkflowUpdate:vote") in chain, chain
        assert ("kwanus-worker", "HandleUpdate:vote") in chain, chain
        assert ("kwanus-worker", "StartActivity:record_event") in chain, chain
        assert chain[-1] == ("kwanus-worker", "RunActivity:record_event"), chain
        # The vote's trace holds the vote's work only: one request, no review's Update.
        assert sum(1 for s in spans if not s.parent_id) == 1
        assert not [s for s in spans if s.name.endswith(":review")]
        assert {s.attributes.get("temporalWorkflowID") for s in spans} >= {f"expansion-{eid}"}


def test_tracing_off_installs_nothing() -> None:
    """No endpoint (the default): no provider, no Temporal plugin, no instrumentation."""
    settings = Settings(otlp_endpoint="")
    assert tracing(settings, "kwanus-api") is None
    assert list(temporal_plugins(None)) == []
    app = create_app(settings)
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert not any("OpenTelemetry" in str(m.cls) for m in app.user_middleware)


def test_worker_metrics_can_be_turned_off() -> None:
    assert worker_runtime(Settings(worker_metrics_port=0)) is None
    assert metrics.serve(create_app(Settings()).state.metrics, Settings(api_metrics_port=0)) is None


async def test_a_made_up_method_is_refused_and_adds_no_series() -> None:
    """Each `method` value is a series of its own: a request with a method HTTP does not define
    is refused (405, naming the allowed ones) before it is measured — guessing methods cannot
    grow the API's metrics."""
    app = create_app(Settings(database_url="sqlite://"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kwanus") as http:
        for i in range(5):
            resp = await http.request(f"MADEUP{i}", "/v1/expansions")
            assert resp.status_code == 405
            assert resp.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
        assert (await http.get("/nowhere")).status_code == 404
    exposed = samples(generate_latest(app.state.metrics).decode())
    methods = {dict(labels)["method"] for name, labels in exposed if name == "http_requests_total"}
    assert methods == {"GET"}
