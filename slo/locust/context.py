"""Trace context for load-test requests: the run id and the W3C headers every request carries.

Locust's `--otel` only instruments requests/urllib3 (HttpUser); FastHttpUser sends nothing, so
the plugin's request hook (`slo.locust.hooks`) sets `traceparent` and `baggage` on every request
of both clients, with the OTel API's propagators. Each
request is a client span of service `locust` (exported over OTLP when an endpoint is set, as
an instrumented client would): without it every trace's entry span would name a parent that
never arrives, which is exactly what a broken trace looks like to the checker. The run id lives here, in one holder
per process, because it changes at test start (web UI: each new swarm is a new run) and, under
`slo gate`, at every slice boundary (the gate writes the current id to a file that users poll).

No locust import here: this module is plain Python so it can be tested and reused anywhere.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from slo.slicefile import parse_slice

BAGGAGE_KEY = "slo.run_id"


def new_run_id(prefix: str = "locust") -> str:
    """A fresh, sortable, unique run id: `locust-20261126T031500-1a2b3c`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


def traceparent() -> str:
    """A new sampled W3C traceparent (used when no client spans are recorded)."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def baggage(run_id: str) -> str:
    """The W3C baggage header value carrying the run id (percent-encoded as the spec asks)."""
    return f"{BAGGAGE_KEY}={urllib.parse.quote(run_id, safe='')}"


class RunContext:
    """The current run id (and target host) of this process, optionally followed from a file.

    `run_id_file`: when set, the id is re-read from that file at most every `poll` seconds
    (cheap: one small read per poll). `slo gate` uses it to move the load from one slice to the
    next without restarting Locust. The file holds either the bare run id or a JSON object
    `{"run_id": ..., "host": ...}`: with a host, requests meant for Locust's `--host` go to
    that base URL instead (the gate alternates between a baseline and a candidate deployment).
    An empty run id means "between slices": requests then carry no run id, and the gate never
    reads them, so requests in flight at a switch are dropped.
    """

    def __init__(self, run_id: str = "", run_id_file: str | None = None, poll: float = 0.05):
        self._run_id = run_id
        self._host = ""
        self.run_id_file = run_id_file
        self.poll = poll
        self._checked = -1e9
        self._lock = threading.Lock()

    def _maybe_refresh(self) -> None:
        if self.run_id_file:
            now = time.monotonic()
            if now - self._checked >= self.poll:
                self._refresh(now)

    @property
    def run_id(self) -> str:
        self._maybe_refresh()
        return self._run_id

    @run_id.setter
    def run_id(self, value: str) -> None:
        self._run_id = value

    @property
    def host(self) -> str:
        """The base URL the current slice's requests go to ('' = Locust's own --host)."""
        self._maybe_refresh()
        return self._host

    def _refresh(self, now: float) -> None:
        with self._lock:
            self._checked = now
            try:
                with open(self.run_id_file, encoding="utf-8") as f:  # type: ignore[arg-type]
                    text = f.read().strip()
            except OSError:
                return  # being replaced right now: keep the previous id one more poll
            self._run_id, self._host = parse_slice(text)

    def headers(self) -> dict[str, str]:
        """Headers for one request: a new trace, and the run id as baggage (if any)."""
        h = {"traceparent": traceparent()}
        rid = self.run_id
        if rid:
            h["baggage"] = baggage(rid)
        return h


#: The one holder of this process (Locust users and the plugin share it).
CURRENT = RunContext()


class ClientTracer:
    """Client spans for load-test requests, exported over OTLP/HTTP to `endpoint`.

    Built lazily in each process (Locust forks workers under `--processes`; an exporter
    thread does not survive a fork). With no endpoint, requests still get a valid traceparent
    and baggage, but no client span is recorded.
    """

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.endpoint = ""
        self._pid = 0
        self._tracer: Any = None
        self._provider: Any = None

    def configure(self, endpoint: str) -> None:
        self.endpoint = "" if endpoint.lower() in ("", "none", "off") else endpoint.rstrip("/")
        self._pid = 0

    def preload(self) -> None:
        """Import the SDK and exporter now, not in the first request (seconds, blocking gevent)."""
        if self.endpoint:
            import opentelemetry.exporter.otlp.proto.http.trace_exporter
            import opentelemetry.sdk.trace.export  # noqa: F401

    def _ensure(self) -> Any:
        if self._pid == os.getpid():
            return self._tracer
        self._pid = os.getpid()
        self._tracer = None
        if not self.endpoint:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self._provider = TracerProvider(resource=Resource.create({"service.name": "locust"}))
        self._provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"{self.endpoint}/v1/traces", timeout=5),
                schedule_delay_millis=200,
                max_export_batch_size=512,
            )
        )
        self._tracer = self._provider.get_tracer("slo.locust")
        return self._tracer

    def start(self, name: str, method: str, url: str) -> tuple[Any, dict[str, str]]:
        """(span or None, headers) for one request; end the span with `finish`."""
        from opentelemetry import baggage as otel_baggage
        from opentelemetry import trace
        from opentelemetry.baggage.propagation import W3CBaggagePropagator
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        rid = self.context.run_id
        tracer = self._ensure()
        span = None
        if tracer is not None:
            span = tracer.start_span(
                f"{method} {name}",
                kind=trace.SpanKind.CLIENT,
                attributes={"http.request.method": method, "url.full": url, BAGGAGE_KEY: rid},
            )
            ctx = trace.set_span_in_context(span)
        else:
            sc = trace.SpanContext(
                trace_id=secrets.randbits(128) or 1,
                span_id=secrets.randbits(64) or 1,
                is_remote=False,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
            ctx = trace.set_span_in_context(trace.NonRecordingSpan(sc))
        if rid:
            ctx = otel_baggage.set_baggage(BAGGAGE_KEY, rid, context=ctx)
        headers: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(headers, context=ctx)
        W3CBaggagePropagator().inject(headers, context=ctx)
        return span, headers

    @staticmethod
    def finish(span: Any, status: int, error: str | None = None) -> None:
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("http.response.status_code", int(status or 0))
        if error or not status or status >= 500:
            span.set_status(Status(StatusCode.ERROR, error or f"HTTP {status}"))
        span.end()

    def flush(self, timeout_ms: int = 5000) -> None:
        if self._provider is not None and self._pid == os.getpid():
            self._provider.force_flush(timeout_ms)


#: Client spans of this process.
TRACER = ClientTracer(CURRENT)
