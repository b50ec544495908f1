"""Benchmark: what one SUT service pays to export its spans, per export and per span.

Records real spans in process (product-service's `GET /products/<id>`, SQLite, the SUT's own
instrumentations and tracer provider set-up), then exports the same spans with the SUT's
OTLP/HTTP exporter (`sut.telemetry`'s session) to a local HTTP/1.1 sink in batches of
several sizes, and times the exporting thread's CPU (`time.thread_time`: the sink's threads
do not count). The reference measured in the same run is the protobuf encoding alone
(`encode_spans(...).SerializeToString()`), the part no batch size changes; and the cost of
recording the spans (the traced request's CPU over the untraced one's, same requests).

The batch size is what `OTEL_BSP_SCHEDULE_DELAY` sets under load: the gate's old 200 ms
delay sent ~50-span batches per service, 1 s (the gate's now) ~250, the SDK's default 5 s
full 512-span batches. This measures the export alone: in the running SUT 5 s batches cost more
CPU per request than 1 s ones (`bench/sut.py`), so read it with that.

    .venv/bin/python bench/export.py [--requests 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# this file is bench/export.py: keep its directory (and bench/sut.py) from shadowing `sut`
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

BATCHES = (20, 50, 128, 512)


def otlp_sink() -> Any:
    """bench/sut.py's OTLP/HTTP receiver (HTTP/1.1 keep-alive, as `slo collect`), started.

    Loaded by path: this directory is not a package, and its sut.py would shadow `sut`."""
    spec = importlib.util.spec_from_file_location("bench_sut", _HERE / "sut.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module.Sink()


def record(db: str, requests: int) -> tuple[list, float, float]:
    """The spans of `requests` product look-ups, and CPU s per request traced and untraced."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import NoOpTracerProvider

    from sut.app import create_app
    from sut.telemetry import make_tracer_provider

    os.environ["SUT_DB"] = db
    memory = InMemorySpanExporter()
    provider = make_tracer_provider("product-service", export=False)  # the SUT's resource, baggage
    provider.add_span_processor(SimpleSpanProcessor(memory))
    cpu = {}
    for label, tp in (("untraced", NoOpTracerProvider()), ("traced", provider)):
        client = create_app("product-service", tracer_provider=tp).test_client()
        paths = [f"/products/{1 + i % 500}" for i in range(requests)]
        client.get(paths[0])  # first-request set-up is not the steady state
        memory.clear()
        t = time.thread_time()
        for p in paths:
            if client.get(p, headers={"baggage": "slo.run_id=bench"}).status_code != 200:
                raise SystemExit(f"GET {p} failed")
        cpu[label] = (time.thread_time() - t) / requests
    return list(memory.get_finished_spans()), cpu["traced"], cpu["untraced"]


def main() -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from sut import seed
    from sut.telemetry import export_session

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        db = str(Path(tmp) / "sut.db")
        seed.ensure_seeded(db)
        spans, traced, untraced = record(db, args.requests)
        sink = otlp_sink()
        endpoint = sink.endpoint + "/v1/traces"
        exporter = OTLPSpanExporter(endpoint=endpoint, session=export_session(endpoint))
        per_request = len(spans) / args.requests
        print(f"{len(spans)} spans from {args.requests} requests ({per_request:.1f} per request); "
              f"recording them: {(traced - untraced) * 1e6:.0f} us CPU per request "
              f"({(traced - untraced) / per_request * 1e6:.1f} us per span; request untraced "
              f"{untraced * 1e6:.0f} us, traced {traced * 1e6:.0f} us)")
        rows: dict[int | str, list[float]] = {}
        for _ in range(args.repeat):
            t = time.thread_time()
            for i in range(0, len(spans), 512):
                encode_spans(spans[i:i + 512]).SerializeToString()
            rows.setdefault("encode", []).append((time.thread_time() - t) / len(spans))
            for batch in BATCHES:
                t = time.thread_time()
                for i in range(0, len(spans), batch):
                    exporter.export(spans[i:i + batch])
                rows.setdefault(batch, []).append((time.thread_time() - t) / len(spans))
        sink.server.shutdown()
    enc = min(rows["encode"])
    print(f"protobuf encoding alone (the reference): {enc * 1e6:.1f} us per span "
          f"(best of {args.repeat})")
    for batch in BATCHES:
        best = min(rows[batch])
        print(f"export in batches of {batch:3d}: {best * 1e6:5.1f} us per span "
              f"({best / enc:.2f}x encoding), {best * batch * 1e3:5.2f} ms per export")
    small, large = min(rows[BATCHES[0]]), min(rows[BATCHES[-1]])
    fixed = (small - large) / (1 / BATCHES[0] - 1 / BATCHES[-1])
    print(f"fit: {fixed * 1e3:.2f} ms per export + {(large - fixed / BATCHES[-1]) * 1e6:.1f} us per span")


if __name__ == "__main__":
    main()
