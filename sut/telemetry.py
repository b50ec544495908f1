"""Tracing set-up for one service: resource, OTLP/HTTP batch export, baggage -> span attributes.

Built lazily inside the app factory, i.e. in each gunicorn worker after the fork, so the batch
processor's thread belongs to the process that records the spans.
"""

from __future__ import annotations

import os

# Database spans carry both the old and the stable names (db.statement + db.query.text, ...), so
# the harness is exercised on both; HTTP spans only the stable ones (http.response.status_code,
# url.full, ...), which the checks read. `http/dup` doubled the attributes of every server and
# client span (24 instead of 12) and the HTTP metrics recorded per request, and attributes are
# what tracing costs here: encoding one for export costs more than recording it. Measured with
# a profile of the traced services under load (issue 12): http/dup cost a quarter of the
# tracing overhead. Must be set before any instrumentation reads it, hence at import time.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "database/dup,http")

from opentelemetry.processor.baggage import BaggageSpanProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
TRACER_NAME = "sut"


def baggage_keys(key: str) -> bool:
    """Baggage copied onto every span: the harness's own keys (slo.run_id, ...)."""
    return key.startswith("slo.")


def sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def traces_endpoint() -> str:
    explicit = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if explicit:
        return explicit
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
    return base.rstrip("/") + "/v1/traces"


def make_tracer_provider(service_name: str, *, export: bool = True) -> TracerProvider:
    """A provider for one service: service.name resource, baggage copier, OTLP batch export.

    Honours OTEL_SDK_DISABLED (the SDK then hands out no-op tracers) and the exporter's and
    batch processor's own OTEL_* variables (endpoint, OTEL_BSP_SCHEDULE_DELAY, ...)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BaggageSpanProcessor(baggage_keys))
    if export and not sdk_disabled():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_endpoint())))
    return provider


def instrument_outbound_http(tracer_provider: TracerProvider) -> None:
    """requests instrumentation (process-wide: only order-service makes outbound calls)."""
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    instrumentor = RequestsInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=tracer_provider)
