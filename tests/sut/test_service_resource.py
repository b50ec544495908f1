"""The service's Resource is hashed once (the OTLP encoder hashes it for every exported span),
and exports exactly as the SDK's own Resource with the same attributes."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from sut.telemetry import make_tracer_provider, service_resource


def test_the_resource_is_hashed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    sdk_hash = Resource.__hash__

    def counted(self: Resource) -> int:
        calls.append(self)
        return sdk_hash(self)

    monkeypatch.setattr(Resource, "__hash__", counted)
    resource = service_resource("order-service")
    same = Resource(resource.attributes, resource.schema_url)
    hashes = {hash(resource) for _ in range(3)}
    assert calls == [resource]
    assert hashes == {hash(same)} and resource == same and same == resource
    assert resource.attributes["service.name"] == "order-service"


def _spans(provider: TracerProvider) -> list:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("sut")
    with tracer.start_as_current_span("GET /orders/<int:order_id>", kind=SpanKind.SERVER,
                                      attributes={"http.route": "/orders/<int:order_id>"}):
        with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT,
                                          attributes={"db.statement": "SELECT 1"}):
            pass
    return list(exporter.get_finished_spans())


def test_spans_encode_as_with_the_sdks_resource() -> None:
    provider = make_tracer_provider("order-service", export=False)
    spans = _spans(provider)
    ours = encode_spans(spans).SerializeToString()
    plain = Resource(provider.resource.attributes, provider.resource.schema_url)
    for span in spans:
        span._resource = plain  # the same spans, carrying the SDK's own Resource
    assert encode_spans(spans).SerializeToString() == ours
    assert len(encode_spans(spans).resource_spans) == 1
