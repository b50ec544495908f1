"""Run ids, the slice file and trace headers of the Locust plugin (no Locust import: no gevent)."""

from __future__ import annotations

import re
from pathlib import Path

from slo.locust.context import (
    ClientTracer,
    RunContext,
    baggage,
    new_run_id,
    traceparent,
)
from slo.slicefile import parse_slice, slice_text

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


def test_traceparent_and_baggage_are_w3c() -> None:
    assert TRACEPARENT.match(traceparent())
    assert traceparent() != traceparent()
    assert baggage("run 1/2") == "slo.run_id=run%201%2F2"


def test_run_ids_are_unique_and_prefixed() -> None:
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50 and all(i.startswith("locust-") for i in ids)


def test_run_context_follows_its_file(tmp_path: Path) -> None:
    f = tmp_path / "run-id"
    f.write_text("slice-1\n")
    ctx = RunContext(run_id_file=str(f), poll=0.0)
    assert ctx.run_id == "slice-1"
    f.write_text("")
    assert ctx.run_id == ""
    assert "baggage" not in ctx.headers()  # between slices: no run id on the wire
    f.write_text("slice-2")
    assert ctx.headers()["baggage"] == "slo.run_id=slice-2"
    f.unlink()
    assert ctx.run_id == "slice-2"  # a missing file keeps the last id


def test_run_context_polls_at_most_every_interval(tmp_path: Path) -> None:
    f = tmp_path / "run-id"
    f.write_text("a")
    ctx = RunContext(run_id_file=str(f), poll=3600)
    assert ctx.run_id == "a"
    f.write_text("b")
    assert ctx.run_id == "a"  # cached until the next poll


def test_client_tracer_without_endpoint_still_propagates() -> None:
    ctx = RunContext(run_id="r-1")
    tracer = ClientTracer(ctx)
    tracer.configure("none")
    span, headers = tracer.start("/orders/[id]", "GET", "http://x/orders/1")
    assert span is None
    assert TRACEPARENT.match(headers["traceparent"])
    assert headers["baggage"] == "slo.run_id=r-1"


def test_client_tracer_records_client_span_as_parent(tmp_path: Path) -> None:
    import os

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracer = ClientTracer(RunContext(run_id="r-2"))
    tracer.configure("http://127.0.0.1:9")
    assert tracer.endpoint == "http://127.0.0.1:9"
    # the OTLP exporter's wiring is the SDK's; here a memory exporter stands in for it
    memory = InMemorySpanExporter()
    tracer._provider = TracerProvider(resource=Resource.create({"service.name": "locust"}))
    tracer._provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer._tracer = tracer._provider.get_tracer("test")
    tracer._pid = os.getpid()
    span, headers = tracer.start("/stock", "GET", "http://x/stock?product_ids=1")
    tracer.finish(span, 500)
    (recorded,) = memory.get_finished_spans()
    _, trace_id, span_id, _ = headers["traceparent"].split("-")
    assert int(trace_id, 16) == recorded.context.trace_id
    assert int(span_id, 16) == recorded.context.span_id
    assert recorded.attributes["slo.run_id"] == "r-2"
    assert recorded.attributes["http.response.status_code"] == 500
    assert recorded.status.status_code.name == "ERROR"
    assert recorded.resource.attributes["service.name"] == "locust"
    tracer._provider.shutdown()


def test_slice_file_may_name_the_host_of_the_slice(tmp_path: Path) -> None:
    f = tmp_path / "run-id"
    f.write_text(slice_text("g-b00", "http://127.0.0.1:9001/"))
    ctx = RunContext(run_id_file=str(f), poll=0.0)
    assert (ctx.run_id, ctx.host) == ("g-b00", "http://127.0.0.1:9001")
    f.write_text(slice_text("g-c01", "http://127.0.0.1:9002"))
    assert (ctx.run_id, ctx.host) == ("g-c01", "http://127.0.0.1:9002")
    f.write_text(slice_text(""))
    assert (ctx.run_id, ctx.host) == ("", "")
    assert parse_slice("plain-id") == ("plain-id", "")
