"""Metrics and traces from the libraries that produce them, switched by settings (README,
"Observability"): the Temporal SDK's own metrics through its runtime's Prometheus endpoint,
and OpenTelemetry traces through the SDK's OpenTelemetry plugin (its tracing interceptor),
exported with OTLP when `KWANUS_OTLP_ENDPOINT` is set. Off, nothing is installed: no
provider, no plugin, no instrumentation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.client import Plugin
from temporalio.contrib.opentelemetry import (
    OpenTelemetryPlugin,
    ReplaySafeTracerProvider,
    create_tracer_provider,
)
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from kwanus.settings import Settings

_installed: ReplaySafeTracerProvider | None = None


def tracing(settings: Settings, service: str) -> ReplaySafeTracerProvider | None:
    """Tracing for this process when `otlp_endpoint` is set: one provider, made once and
    installed as OpenTelemetry's global one (the SDK's plugin and its workflow side read that),
    exporting `service`'s spans to the endpoint with OTLP over HTTP in batches, off the request
    path. Replay-safe: a workflow replayed on a worker sends no span twice, and its span ids are
    deterministic. None when no endpoint is set: tracing off. The provider flushes at exit;
    a process that ends in `os._exit` (the worker) flushes it first."""
    global _installed
    if not settings.otlp_endpoint:
        return None
    if _installed is None:
        provider = create_tracer_provider(resource=Resource.create({SERVICE_NAME: service}))
        endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        trace.set_tracer_provider(provider)
        _installed = provider
    return _installed


def temporal_plugins(provider: ReplaySafeTracerProvider | None) -> Sequence[Plugin]:
    """The client's plugins: the SDK's OpenTelemetry plugin when tracing is on. A worker takes
    it from its client. A step's span goes from the API's request through the Update's call to
    the worker's handling of it and every activity the handler runs (the handler runs in the
    context its caller sent), and workflow spans have their real durations."""
    if provider is None:
        return []
    return [OpenTelemetryPlugin(add_temporal_spans=True)]


def worker_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime serving the SDK's worker and client metrics in Prometheus format on
    `metrics_host:worker_metrics_port` (durations in seconds); None when the port is 0. The
    port must be free: the runtime fails to start otherwise, and so does the worker."""
    if not settings.worker_metrics_port:
        return None
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"{settings.metrics_host}:{settings.worker_metrics_port}",
                durations_as_seconds=True,
            )
        )
    )


# Where the FastAPI instrumentation puts the request's URL: with its query in http.url (and,
# with the stable conventions, url.full / url.query).
_URL_ATTRIBUTES = ("http.url", "url.full", "http.target")


def request_span_without_query(span: Any, scope: dict[str, Any]) -> None:
    """The FastAPI instrumentation's `server_request_hook`: a request's span keeps its path,
    never its query string. The API takes no secret in a query, but a careless client may put
    one there (a token), and spans are not redacted as log lines are."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and "?" in value:
            span.set_attribute(key, value.split("?", 1)[0])
    if attributes.get("url.query"):
        span.set_attribute("url.query", "")


def ignore_callers_trace_context() -> None:
    """The API's callers are partners and the internet: their `traceparent`, `tracestate` and
    `baggage` are not taken (the FastAPI instrumentation extracts with the global propagator,
    now one that extracts nothing). Otherwise a caller picks the trace id our spans join and,
    with flags 00, that none of its request's spans — the API's, the Update's, the workflow's,
    its activities' — is sampled; and its baggage travels into the run's history. Each request
    starts a trace of its own; the Temporal plugin carries it on with its own propagator."""
    propagate.set_global_textmap(_NothingIncoming())


class _NothingIncoming(TextMapPropagator):
    """Extracts no context (a request's span is a root) and injects none."""

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        return context if context is not None else Context()

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        return None

    @property
    def fields(self) -> set[str]:
        return set()
