"""The API's Prometheus endpoint (README, "Observability"): HTTP metrics from
prometheus-fastapi-instrumentator, and the business gauges read from the store at each scrape.
It listens on its own port (`KWANUS_API_METRICS_PORT`), never on the public API's."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from wsgiref.simple_server import WSGIServer

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator
from sqlalchemy.exc import SQLAlchemyError

from kwanus.settings import Settings
from store import gauges
from store.db import Database
from store.tables import utcnow

log = logging.getLogger("kwanus.metrics")
# Probes and the console's stylesheet would drown the requests that matter.
UNMEASURED = ["/healthz", "/readyz", "/console/static/.*"]


class StoreGauges(Collector):
    """The business gauges, read from the store when scraped (`store.gauges`). `db` is the
    app's database once its lifespan has made it; `clock` is the time overdue is judged at."""

    def __init__(
        self, db: Callable[[], Database | None], clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.db = db
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("kwanus_store_up", "1 if the business gauges could be read.")
        database = self.db()
        if database is None:
            return
        now = self.clock()
        try:
            with database.session() as session:
                read = gauges.read(session, now)
        except SQLAlchemyError as exc:
            log.warning("business gauges not read: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _families(read, now)


def _families(read: gauges.Gauges, now: datetime) -> Iterator[Metric]:
    processes = GaugeMetricFamily(
        "kwanus_processes_open", "Open processes, by kind and stage.", labels=["kind", "stage"]
    )
    for (kind, stage), n in sorted(read.open_processes.items()):
        processes.add_metric([kind, stage], n)
    waiting = GaugeMetricFamily(
        "kwanus_steps_waiting", "Steps awaited, by who is awaited.", labels=["actor"]
    )
    overdue = GaugeMetricFamily(
        "kwanus_steps_overdue", "Steps awaited past their deadline, by actor.", labels=["actor"]
    )
    oldest = GaugeMetricFamily(
        "kwanus_oldest_waiting_step_seconds",
        "How long the step awaited longest has waited, by actor.",
        labels=["actor"],
    )
    for actor, w in sorted(read.waiting.items()):
        waiting.add_metric([actor], w.steps)
        overdue.add_metric([actor], w.overdue)
        if w.oldest_since is not None:
            oldest.add_metric([actor], max((now - w.oldest_since).total_seconds(), 0.0))
    yield from (processes, waiting, overdue, oldest)
    yield GaugeMetricFamily(
        "kwanus_webhook_deliveries_failing",
        "Webhook deliveries still retried after a failed attempt.",
        value=read.deliveries_failing,
    )
    yield GaugeMetricFamily(
        "kwanus_webhook_deliveries_given_up",
        "Webhook deliveries that failed for their whole retry period.",
        value=read.deliveries_given_up,
    )
    yield GaugeMetricFamily(
        "kwanus_webhook_subscriptions_disabled",
        "Webhook subscriptions disabled after failing.",
        value=read.subscriptions_disabled,
    )


def install(app: FastAPI, clock: Callable[[], datetime] = utcnow) -> CollectorRegistry:
    """Measure every request to `app` (outermost: a request refused by the rate limit or the
    body limit counts too) into a registry of its own, beside the business gauges; the
    registry is `app.state.metrics`. Call after the app's other middleware is added."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` twin series
    registry = CollectorRegistry()
    Instrumentator(
        should_group_status_codes=False,
        excluded_handlers=UNMEASURED,
        registry=registry,
    ).instrument(app)
    registry.register(StoreGauges(lambda: getattr(app.state, "db", None), clock))
    app.state.metrics = registry
    return registry


def serve(
    registry: CollectorRegistry, settings: Settings
) -> tuple[WSGIServer, threading.Thread] | None:
    """Serve `registry` on `metrics_host:api_metrics_port` in a thread of its own; None when
    the port is 0."""
    if not settings.api_metrics_port:
        return None
    return start_http_server(settings.api_metrics_port, settings.metrics_host, registry)
