"""Adversarial review of issue 23 (metrics, traces, logs): what a partner, an outsider or a
careless operator can do to the telemetry — each test a hole found, reached through the real
processes and servers (`kwanus api`, `kwanus worker`, the API with its worker), with real
inputs. Each states what should hold; it fails while the hole is open."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from api import metrics
from kwanus.settings import Settings
from kwanus.temporal import connect
from policy.vocabulary import Body
from store import repo
from store.db import Database
from store.repo.notifications import new_secret
from store.schemas import TokenCreate
from store.tables import utcnow
from testdata.factories import partner_body, proposal_body, review
from testdata.otlp import Collector, Span, collecting
from tests.apistack import eventually, unique
from tests.conftest import running_worker
from tests.processes import free_port, kwanus_api, kwanus_worker, product_env
from tests.test_observability import http_to, scrape, target, token, value

# --- 1. Logs: the redaction that keeps secrets out breaks the JSON it redacts ---------------


async def test_a_query_naming_a_cookie_keeps_every_access_line_json(
    dev_env: WorkflowEnvironment, db: Database, tmp_path: Path
) -> None:
    """MEDIUM. Redaction runs on the formatted JSON line: the `cookie`/`authorization` pattern
    takes everything up to the next quote — the backslash of an escaped `\\"` included — so any
    request whose query says `cookie=` or `authorization=` (no special character needed; an
    outsider, unauthenticated) leaves a line that is not JSON: a log pipeline parsing JSON drops
    it or keeps it unparsed, its request id and partner with it. `kwanus api`'s own stderr."""
    log = tmp_path / "api.log"
    async with kwanus_api(product_env(dev_env, db.url, tmp_path), log) as http:
        for query in ("cookie=1", "authorization=x", "Cookie%3Ax"):
            resp = await http.get(f"/healthz?{query}", headers={"X-Request-ID": "probe-1"})
            assert resp.status_code in (200, 422), resp.text
    lines = log.read_text().splitlines()
    access = [line for line in lines if "uvicorn.access" in line and "probe-1" in line]
    assert len(access) == 3, lines
    for line in access:
        try:
            parsed = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert parsed["request_id"] == "probe-1", parsed


async def test_an_access_line_costs_the_same_whatever_the_query_says(
    dev_env: WorkflowEnvironment, db: Database, tmp_path: Path
) -> None:
    """MEDIUM (unauthenticated CPU amplification on the API's event loop). Every line is
    redacted before it is written, in the thread that logs it — uvicorn's access line in the
    event loop. The `scheme://user:password@` pattern starts at every word boundary and scans
    the rest of the run of scheme characters from each: quadratic in a query like `a.a.a.…`
    (16 KB, what h11 takes): ~0.1 s of the loop per request against ~5 ms for a query of the
    same length without the dots. `/healthz` has no rate limit: a handful of such requests a
    second from one client stall every request of every partner."""
    benign, crafted = "ab" * 7900, "a." * 7900
    spent = {benign: 0.0, crafted: 0.0}
    async with kwanus_api(product_env(dev_env, db.url, tmp_path), tmp_path / "api.log") as http:
        for _ in range(2):
            for query in (benign, crafted):
                started = time.perf_counter()
                for _ in range(8):
                    resp = await http.get(f"/healthz?{query}")
                    assert resp.status_code == 200, resp.text
                spent[query] += time.perf_counter() - started
    assert spent[crafted] < 4 * spent[benign] + 0.2, (
        f"16 requests: {spent[benign]:.2f} s with a plain query, "
        f"{spent[crafted]:.2f} s with `a.a.a.…` of the same length"
    )


# --- 2. Metrics: a series for every path an outsider makes up -------------------------------


async def test_made_up_paths_with_a_trailing_slash_add_no_series(
    dev_env: WorkflowEnvironment, db: Database, tmp_path: Path
) -> None:
    """HIGH (unauthenticated, unbounded). README: "`handler` is the route's template, never the
    path: a path no route matches is `none`, so guessing paths makes no new series". But
    prometheus-fastapi-instrumentator 8.1 labels a request that FastAPI's trailing-slash
    redirect answers (307) with the *requested path*: `/console/<anything>/` (a template
    `/console/{kinds}` without the slash) and `/v1/expansions/<anything>/` are each a new
    `handler` — a counter, a histogram and two summaries a path, kept for the process's life,
    in every scrape and in Prometheus. The redirect comes before any authentication, and
    `/console/…` is outside the per-client rate limit: anyone who reaches the API grows its
    memory and its metrics without bound."""
    port = free_port()
    env = product_env(dev_env, db.url, tmp_path, KWANUS_API_METRICS_PORT=str(port))
    async with kwanus_api(env, tmp_path / "api.log") as http:
        for i in range(20):
            for path in (f"/console/made-up-{i}/", f"/v1/expansions/made-up-{i}/"):
                resp = await http.get(path, follow_redirects=False)
                assert resp.status_code in (307, 401, 404), (path, resp.status_code)
        async with httpx.AsyncClient(timeout=10) as scraper:
            text = (await scraper.get(f"http://127.0.0.1:{port}/metrics")).text
    handlers = {
        s.labels["handler"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if "handler" in s.labels
    }
    made_up = sorted(h for h in handlers if "made-up" in h)
    assert not made_up, f"{len(made_up)} series of made-up paths: {made_up[:4]}…"


# --- 3. Traces: what the API's spans carry, and what a caller decides about them -------------


@asynccontextmanager
async def traced(
    dev_env: WorkflowEnvironment, db: Database, tmp_path: Path, *, worker: bool = False
) -> AsyncIterator[tuple[httpx.AsyncClient, Collector]]:
    """`kwanus api` (and `kwanus worker`) with tracing on, exporting to a collector here."""
    with collecting() as collector:
        env = product_env(
            dev_env,
            db.url,
            tmp_path,
            KWANUS_OTLP_ENDPOINT=collector.endpoint,
            KWANUS_WEBHOOKS_ALLOW_PRIVATE="true",
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        async with contextlib.AsyncExitStack() as stack:
            if worker:
                await stack.enter_async_context(kwanus_worker(env, tmp_path / "worker.log"))
            http = await stack.enter_async_context(kwanus_api(env, tmp_path / "api.log"))
            yield http, collector


def _attribute_values(spans: list[Span]) -> str:
    return "\n".join(f"{s.name} {k}={v}" for s in spans for k, v in s.attributes.items())


async def test_a_token_in_the_query_string_never_reaches_a_span(
    dev_env: WorkflowEnvironment, db: Database, tmp_path: Path
) -> None:
    """MEDIUM. The logs redact a token a careless client puts in the query string (README,
    "Logs"); the spans carry the URL as it came — `http.url` and `http.target` of the FastAPI
    instrumentation hold the query (the SDK redacts only a few cloud signature names) — so the
    token, or a webhook secret pasted the same way, is in the trace backend in clear."""
    with db.session() as session:
        admin = repo.create_token(session=session, token=TokenCreate(role="admin")).token
    hook_secret = new_secret()
    async with traced(dev_env, db, tmp_path) as (http, collector):
        resp = await http.get("/v1/partners", params={"token": admin})
        assert resp.status_code in (401, 422), resp.text
        # (Not a probe: /healthz and /readyz make no span.)
        resp = await http.get("/v1/partners/acme", params={"secret": hook_secret})
        assert resp.status_code in (401, 422), resp.text

        async def exported() -> list[Span]:
            spans = [s for s in collector.received() if s.service == "kwanus-api"]
            served = {s.name for s in spans if "http.status_code" in s.attributes}
            wanted = {"GET /v1/partners", "GET /v1/partners/{partner_id}"}
            return spans if wanted <= served else []

        spans = await eventually(exported)
    assert spans, collector.received()
    seen = _attribute_values(spans)
    assert admin.rsplit(".", 1)[1] not in seen, seen
    assert hook_secret.removeprefix("whsec_") not in seen, seen


def _bearer(db: Database, role: str, partner_id: str | None = None) -> dict[str, str]:
    with db.session() as session:
        created = repo.create_token(
            session=session, token=TokenCreate(role=role, partner_id=partner_id)
        )
    return {"Authorization": f"Bearer {created.token}"}


async def test_a_partners_trace_context_decides_nothing_and_goes_nowhere(
    dev_env: WorkflowEnvironment, db: Database, tmp_path: Path
) -> None:
    """MEDIUM (trust boundary). The API takes the W3C trace context of whoever calls it (the
    global propagator's `traceparent`, `tracestate`, `baggage`), and the Temporal plugin carries
    that context on into the workflow:
    - `traceparent` flags 00: the partner's request, its Update, the workflow's handling and the
      activities are not sampled — nothing of it reaches the collector (a partner hides its own
      traffic from ops' traces);
    - flags 01: its spans join the trace id the partner chose (it can pile its requests, or
      mimic someone else's, into one trace);
    - its `baggage` is written into the run's history (the `_tracer-data` header of its Update
      and of every activity the Update schedules), which Temporal keeps in clear.
    At a public edge the caller's context should at most be linked, never be the parent."""
    pid, eid = unique("tp"), unique("tp")
    hidden, chosen = secrets.token_hex(16), secrets.token_hex(16)
    marker = f"attack{secrets.token_hex(6)}"
    async with traced(dev_env, db, tmp_path, worker=True) as (http, collector):
        admin = _bearer(db, "admin")
        resp = await http.post("/v1/partners", json=partner_body(pid), headers=admin)
        assert resp.status_code == 201, resp.text
        partner = _bearer(db, "partner", pid)
        unsampled = {
            **partner,
            "traceparent": f"00-{hidden}-{secrets.token_hex(8)}-00",
            "baggage": f"kwanus.note={marker}",
        }
        resp = await http.post("/v1/expansions", json=proposal_body(id=eid), headers=unsampled)
        assert resp.status_code == 202, resp.text
        sampled = {**partner, "traceparent": f"00-{chosen}-{secrets.token_hex(8)}-01"}
        resp = await http.get(f"/v1/expansions/{eid}", headers=sampled)
        assert resp.status_code == 200, resp.text

        async def settled() -> list[Span]:
            spans = collector.received()
            names = {s.name for s in spans if s.service == "kwanus-api"}
            return spans if "GET /v1/expansions/{expansion_id}" in names else []

        await eventually(settled)
        await asyncio.sleep(2)  # what else the API and the worker export of it
        spans = collector.received()
    handle = dev_env.client.get_workflow_handle(f"expansion-{eid}")
    headers = _tracer_headers(json.loads((await handle.fetch_history()).to_json()))
    await handle.terminate("test over")
    problems = []
    if not [s for s in spans if s.name == "POST /v1/expansions"]:
        problems.append("the submission flagged 00 by the partner was not traced at all")
    if chosen in {s.trace_id for s in spans}:
        problems.append(f"the API's spans joined the trace id the partner chose ({chosen})")
    if hidden in " ".join(headers):
        problems.append("the partner's trace id is the parent of the workflow's work")
    if marker in " ".join(headers):
        problems.append(f"the partner's baggage is in the run's history: {headers[0]}")
    assert not problems, problems


def _tracer_headers(history: Any) -> list[str]:
    """The `_tracer-data` headers of a history (JSON form), decoded."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "_tracer-data" and isinstance(value, dict) and "data" in value:
                    found.append(base64.b64decode(value["data"]).decode())
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(history)
    return found


def _chunked_post(port: int, chunks: int) -> bytes:
    """POST /v1/partners with a body of `chunks` one-byte chunks, a little apart (as a slow
    client sends them), no credential; the status line of the answer."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /v1/partners HTTP/1.1\r\nHost: kwanus\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        for _ in range(chunks):
            sock.sendall(b"1\r\n \r\n")
            time.sleep(0.003)
        sock.sendall(b"0\r\n\r\n")
        sock.settimeout(10)
        return sock.recv(1000).split(b"\r\n", 1)[0]


async def test_a_body_sent_in_small_chunks_is_one_span_not_one_a_chunk(
    dev_env: WorkflowEnvironment, db: Database, tmp_path: Path
) -> None:
    """LOW (tracing on; unauthenticated). The FastAPI instrumentation makes an `http receive`
    span of every ASGI message a request's body arrives in: a client trickling a body in
    one-byte chunks (the body limit counts bytes, 256 KiB) makes a span a chunk, at its own
    pace, before any route or credential is looked at — 300 chunks, 300 spans. The batch
    processor's queue (2,048) then drops everyone else's spans: an outsider blinds the traces
    with one slow request."""
    async with traced(dev_env, db, tmp_path) as (http, collector):
        port = int(str(http.base_url).rsplit(":", 1)[1].strip("/"))
        status = await asyncio.to_thread(_chunked_post, port, 300)
        assert status.split(b" ")[1] in (b"401", b"422"), status
        # Exported after the POST's spans (not a probe: /healthz makes no span).
        resp = await http.get("/v1/partners")
        assert resp.status_code == 401

        async def exported() -> list[Span]:
            spans = collector.received()
            return spans if any(s.name == "GET /v1/partners" for s in spans) else []

        assert await eventually(exported)
        await asyncio.sleep(1)
        spans = [s for s in collector.received() if s.name.startswith("POST /v1/partners")]
    assert spans and len(spans) <= 5, f"{len(spans)} spans for one request"


# --- 4. Exposure: what docker-compose.yml publishes on the host -----------------------------


def test_compose_publishes_prometheus_on_the_hosts_loopback_only() -> None:
    """MEDIUM (careless operator, as shipped). The metrics endpoints are kept off the public
    port and inside the compose network — but Prometheus, which scrapes them, is published as
    `9090:9090`: on every interface of the host, with no authentication. Anyone who reaches the
    host reads every series (the business gauges: open processes by stage, what each body is
    late on), the scrape targets' internal addresses, the configuration, and may run PromQL as
    expensive as it likes. Only the API is meant to face the world: every other published port
    belongs on 127.0.0.1 (an SSH tunnel or a proxy with authentication reaches it)."""
    compose = yaml.safe_load((Path(__file__).parents[1] / "docker-compose.yml").read_text())
    published = {
        name: [str(p) for p in service.get("ports", [])]
        for name, service in compose["services"].items()
        if name == "prometheus"
    }
    open_to_all = {
        name: [p for p in ports if not p.startswith("127.0.0.1:")]
        for name, ports in published.items()
    }
    assert not any(open_to_all.values()), open_to_all


def test_compose_publishes_temporal_and_its_ui_on_the_hosts_loopback_only() -> None:
    """HIGH, from before issue 23 (the ports are 953f2ea's; issue 23 reworked both services and
    checked the file without this rule). The Temporal frontend (`7233:7233`) and its Web UI
    (`8233:8080`) are published on every interface of the host, and neither authenticates:
    anyone who reaches the host reads every run's history — proposal text, rationales,
    manifests — and can signal, update, reset or terminate any governance process, the role
    checks of the Update validators included (the acting role is in the Update's payload)."""
    compose = yaml.safe_load((Path(__file__).parents[1] / "docker-compose.yml").read_text())
    open_to_all = {
        name: [str(p) for p in service.get("ports", []) if not str(p).startswith("127.0.0.1:")]
        for name, service in compose["services"].items()
        if name in ("temporal", "temporal-ui")
    }
    assert not any(open_to_all.values()), open_to_all


# --- 5. The business gauges -----------------------------------------------------------------


async def test_the_oldest_waiting_step_keeps_its_age_while_the_partner_sends_plans_one_by_one(
    ts_env: WorkflowEnvironment, db: Database
) -> None:
    """MEDIUM (the gauge does not tell the truth; a partner can reset it). A step keeps its
    `since` while the same (actor, action) stays awaited — but the plans step's action names the
    plans still missing ("submit plans: risk_mitigation, fallback_plan, monitoring_plan"), so
    each plan sent changes the text and the step, still open, counts as just opened: a partner
    sending one plan every few weeks never looks late in `kwanus_oldest_waiting_step_seconds`
    (the escalation view ops alert on), though the step has waited since it opened."""
    port = free_port()
    base = Settings(database_url=db.url, temporal_address=target(ts_env), api_metrics_port=port)
    client = await connect(base, wait=10)
    now = [utcnow()]
    eid = unique("plans")
    async with running_worker(client, db) as task_queue:
        settings = Settings(**{**base.model_dump(), "task_queue": task_queue})
        async with http_to(settings, temporal=ts_env.client, clock=lambda: now[0]) as (http, app):
            served = metrics.serve(app.state.metrics, settings)
            assert served is not None
            try:
                admin = token(db, "admin")
                resp = await http.post("/v1/partners", json=partner_body("acme"), headers=admin)
                assert resp.status_code == 201, resp.text
                acme = token(db, "partner", "acme")
                body = proposal_body(
                    id=eid, risk_mitigation=None, fallback_plan=None, monitoring_plan=None
                )
                resp = await http.post("/v1/expansions", json=body, headers=acme)
                assert resp.status_code == 202, resp.text
                for b in Body:
                    resp = await http.post(
                        f"/v1/expansions/{eid}/reviews", json=review(b), headers=token(db, b.value)
                    )
                    assert resp.status_code == 200, resp.text
                assert resp.json()["step"] == "plans", resp.json()
                # Ten days pass; the partner sends one of the three plans.
                await ts_env.sleep(timedelta(days=10))
                resp = await http.post(
                    f"/v1/expansions/{eid}/plans",
                    json={"risk_mitigation": "a flag per merchant"},
                    headers=acme,
                )
                assert resp.status_code == 200, resp.text
                assert resp.json()["step"] == "plans", resp.json()  # still open
                now[0] = await ts_env.get_current_time()
                scraped = await scrape(port)
                oldest = value(scraped, "kwanus_oldest_waiting_step_seconds", actor="partner")
                assert oldest is not None
                assert oldest >= timedelta(days=10).total_seconds(), (
                    f"the plans step has waited 10 days; the gauge says {oldest:.0f} s"
                )
            finally:
                served[0].shutdown()
                served[0].server_close()
    await ts_env.client.get_workflow_handle(f"expansion-{eid}").terminate("test over")
