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

from typing import TYPE_CHECKING

from opentelemetry.processor.baggage import BaggageSpanProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

if TYPE_CHECKING:
    import requests

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


#: The exporter's own ways to get a session (an entry point named by these): leave it to them.
CREDENTIAL_PROVIDER_VARS = ("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
                            "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER")


def export_session(endpoint: str) -> requests.Session | None:
    """A requests session for the OTLP exporter that read the environment once, at start.

    A default session asks the environment on every export: proxy variables (all of
    os.environ is scanned), ~/.netrc, CA bundle variables. With the batch processor exporting
    every 200 ms from each service that was a fifth of the export thread's CPU in a profile
    under load (issue 12). Here the proxies and netrc credentials that apply to the endpoint
    are resolved once and the session stops trusting the environment, which is the same
    behaviour for an environment that does not change while the service runs.

    None (the exporter's default session) for https, where CA bundle variables matter to the
    exporter's own TLS settings, and when a credential provider supplies the session."""
    if not endpoint.lower().startswith("http://") or any(os.environ.get(v) for v in CREDENTIAL_PROVIDER_VARS):
        return None
    import requests
    from requests.utils import get_environ_proxies, get_netrc_auth

    session = requests.Session()
    session.proxies.update(get_environ_proxies(endpoint))
    auth = get_netrc_auth(endpoint)
    if auth:
        session.auth = auth
    session.trust_env = False
    return session


class ServiceResource(Resource):
    """The service's Resource, hashed once instead of once per exported span.

    The OTLP exporters group a batch's spans by resource in a dict (`encode_spans`), and
    `Resource.__hash__` JSON-dumps a copy of the attributes on every call: 8 of the 44 us the
    encoding of a SUT span costs alone, and a tenth of the export threads' CPU in the running
    SUT (0.1 ms per order-detail request, issue 12). A Resource is immutable (its attributes
    are frozen at creation), so its hash can be kept; equality, and so the grouping, are the
    library's own. A fork's resource refresh (`TracerProvider._handle_fork`) merges into a
    plain Resource: the hash is then per span again, as before, and still right."""

    _hash: int | None = None

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = super().__hash__()
        return self._hash


def service_resource(service_name: str) -> Resource:
    """`Resource.create` (SDK attributes, OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME, ...)
    with `service_name` as service.name, as a ServiceResource."""
    created = Resource.create({"service.name": service_name})
    return ServiceResource(created.attributes, created.schema_url)


def make_tracer_provider(service_name: str, *, export: bool = True) -> TracerProvider:
    """A provider for one service: service.name resource, baggage copier, OTLP batch export.

    Honours OTEL_SDK_DISABLED (the SDK then hands out no-op tracers) and the exporter's and
    batch processor's own OTEL_* variables (endpoint, OTEL_BSP_SCHEDULE_DELAY, ...)."""
    provider = TracerProvider(resource=service_resource(service_name))
    provider.add_span_processor(BaggageSpanProcessor(baggage_keys))
    if export and not sdk_disabled():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        endpoint = traces_endpoint()
        exporter = OTLPSpanExporter(endpoint=endpoint, session=export_session(endpoint))
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def instrument_outbound_http(tracer_provider: TracerProvider) -> None:
    """requests instrumentation (process-wide: only order-service makes outbound calls)."""
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    instrumentor = RequestsInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=tracer_provider)
