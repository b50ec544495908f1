"""`slo collect` as users run it: real SDK exporters, hostile senders, kill -9, pressure."""

from __future__ import annotations

import gzip
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import requests
from click.testing import CliRunner
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpExporter,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from slo.cli import main as slo_main
from slo.errors import SourceError
from slo.ingest.collector import CollectorConfig, start
from slo.ingest.store import SpanStore
from slo.ports import free_port

LISTENING = re.compile(r"listening: OTLP/HTTP http://[^:]+:(\d+)/v1/traces, OTLP/gRPC [^:]+:(\d+)")
PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


class Collector:
    """A real `slo collect` process on free ports."""

    def __init__(self, store: Path, *args: str):
        self.store = store
        cmd = [sys.executable, "-c", "from slo.cli import main; main()", "collect",
               "--store", str(store), "--port", "0", "--grpc-port", "0", *args]
        # A file, not a pipe (a full pipe would block it); the child keeps its own descriptor.
        with open(f"{store}.stderr", "ab") as stderr:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in self.proc.stdout],
                         daemon=True).start()
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError("collector did not print its listening line: "
                                 + Path(f"{store}.stderr").read_text()) from None
        m = LISTENING.search(line)
        assert m, line
        self.http_port, self.grpc_port = int(m.group(1)), int(m.group(2))
        self.url = f"http://127.0.0.1:{self.http_port}/v1/traces"

    def post(self, body: bytes, headers: dict[str, str], **kw) -> requests.Response:
        return requests.post(self.url, data=body, headers=headers, timeout=30, **kw)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(30)


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    c = Collector(tmp_path_factory.mktemp("store"), "--run-id", "cli-run", "--max-body", "2MiB")
    yield c
    assert c.stop() == 0
    assert not list((c.store / "wal").glob("*.arrows")), "a clean stop leaves no WAL"


def _spans(n: int, service: str, run_id: str | None = None, prefix: str = "op"):
    """n finished SDK spans (a server span with DB children) with realistic attributes."""
    exp = InMemorySpanExporter()
    res = {"service.name": service}
    tp = TracerProvider(resource=Resource.create(res))
    tp.add_span_processor(SimpleSpanProcessor(exp))
    tracer = tp.get_tracer("test")
    extra = {"slo.run_id": run_id} if run_id else {}
    for i in range(n // 2):
        with tracer.start_as_current_span(f"GET /{prefix}/<int:id>", kind=SpanKind.SERVER,
                                          attributes={"http.route": f"/{prefix}/<int:id>",
                                                      "http.response.status_code": 200,
                                                      "n": i, **extra}):
            with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes={
                    "db.system": "sqlite", "db.statement": f"SELECT * FROM t WHERE id = {i}",
                    "ratio": 0.5, "tags": ["a", "b"], **extra}):
                pass
    return exp.get_finished_spans()


def _total(store: Path) -> int:
    try:
        return sum(r.spans for r in SpanStore(store).runs())
    except Exception:  # noqa: BLE001 - an empty store counts as zero
        return 0


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_sdk_http_and_grpc_exporters_exactly_once_attributes_intact(collector):
    http_spans = _spans(60, "svc-http", run_id="run-h")
    plain = _spans(20, "svc-plain", prefix="plain")
    grpc_spans = _spans(40, "svc-grpc", run_id="run-g")
    assert HttpExporter(endpoint=collector.url).export(http_spans) == SpanExportResult.SUCCESS
    gz = HttpExporter(endpoint=collector.url, compression=Compression.Gzip)
    assert gz.export(plain) == SpanExportResult.SUCCESS
    ge = GrpcExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True,
                      compression=grpc.Compression.Gzip)
    assert ge.export(grpc_spans) == SpanExportResult.SUCCESS
    ge.shutdown()
    store = SpanStore(collector.store)
    for run, sent in (("run-h", http_spans), ("cli-run", plain), ("run-g", grpc_spans)):
        t = store.read(run)  # visible right away, before any compaction
        rows = {r["span_id"]: r for r in t.to_pylist()}
        assert len(rows) == t.num_rows == len(sent), run  # exactly once
        for s in sent:
            r = rows[format(s.context.span_id, "016x")]
            assert r["trace_id"] == format(s.context.trace_id, "032x")
            assert json.loads(r["attributes"]) == {k: (list(v) if isinstance(v, tuple) else v)
                                                   for k, v in s.attributes.items()}
            assert r["service"] == s.resource.attributes["service.name"]
            assert r["parent_span_id"] == (format(s.parent.span_id, "016x") if s.parent else "")
            assert (r["start_ns"], r["end_ns"]) == (s.start_time, s.end_time)
            assert r["kind"] == s.kind.name.lower()


def test_json_partial_success_and_error_bodies_in_request_encoding(collector):
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "0102030405060708090A0B0C0D0E0F10", "spanId": "A1A2A3A4A5A6A7A8",
         "name": "ok", "startTimeUnixNano": "1", "endTimeUnixNano": "2",
         "attributes": [{"key": "slo.run_id", "value": {"stringValue": "run-json"}}]},
        {"traceId": "0102", "spanId": "A1A2A3A4A5A6A7A9", "name": "short id"}]}]}]}
    r = collector.post(json.dumps(doc).encode(), JSON)
    assert r.status_code == 200
    assert r.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert SpanStore(collector.store).read("run-json")["span_id"].to_pylist() == [
        "a1a2a3a4a5a6a7a8"]
    r = collector.post(b"{not json", JSON)
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/json"
    assert r.json()["code"] == 3
    r = collector.post(b"\xff\xff\xff", PROTO)
    assert r.status_code == 400
    assert status_pb2.Status.FromString(r.content).message
    assert collector.post(b"", PROTO).status_code == 200  # empty request: success
    assert collector.post(b"x", {"Content-Type": "text/plain"}).status_code == 415
    r = requests.post(collector.url.replace("/v1/traces", "/v1/logs"), data=b"", headers=PROTO)
    assert r.status_code == 404


def test_grpc_malformed_and_partial_success(collector):
    channel = grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}")
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=None,
        response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString)
    with pytest.raises(grpc.RpcError) as e:
        export(b"\x0a\xff\xff\xff\x0f", timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    req = encode_spans(_spans(4, "grpc-partial", run_id="run-gp"))
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = b"short"
    resp = export(req.SerializeToString(), timeout=10)
    assert resp.partial_success.rejected_spans == 1
    assert SpanStore(collector.store).read("run-gp").num_rows == 3
    channel.close()


def test_chunked_gzipped_json(collector):
    doc = json.loads((Path(__file__).resolve().parents[2] / "fixtures"
                      / "otlp-proto-example-trace.json").read_bytes())
    doc["resourceSpans"][0]["resource"]["attributes"].append(
        {"key": "slo.run_id", "value": {"stringValue": "run-chunked"}})
    body = gzip.compress(json.dumps(doc).encode())
    parts = iter([body[:10], body[10:50], body[50:]])  # requests sends a generator chunked
    r = collector.post(parts, {**JSON, "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    (row,) = SpanStore(collector.store).read("run-chunked").to_pylist()
    assert row["span_id"] == "eee19b7ec3c1b174"


@pytest.mark.parametrize("chunks", [b"-5\r\nabc", b"zz\r\n", b"ffffffff\r\nabc"])
def test_hostile_chunked_bodies(collector, chunks):
    s = socket.create_connection(("127.0.0.1", collector.http_port))
    s.settimeout(20)
    s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf"
              b"\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" + chunks)
    assert s.recv(100).split(b" ")[1] in (b"400", b"413")
    s.close()


def test_expect_100_continue_gets_continue_then_stores(collector):
    """curl and many clients send `Expect: 100-continue` before a large body."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    body = encode_spans(_spans(4, "cont", run_id="run-100-continue")).SerializeToString()
    s = socket.create_connection(("127.0.0.1", collector.http_port))
    s.settimeout(20)
    s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf"
              b"\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    interim = b""
    while b"\r\n\r\n" not in interim:
        got = s.recv(4096)
        assert got, f"connection closed before 100 Continue: {interim!r}"
        interim += got
    assert interim.startswith(b"HTTP/1.1 100 "), interim
    s.sendall(body)
    final = interim.split(b"\r\n\r\n", 1)[1]
    while b"\r\n\r\n" not in final:
        got = s.recv(4096)
        assert got, f"connection closed before the response: {final!r}"
        final += got
    s.close()
    assert final.startswith(b"HTTP/1.1 200 "), final
    assert SpanStore(collector.store).read("run-100-continue").num_rows == 4


def test_size_limits_and_gzip_bomb(collector):
    before = _total(collector.store)
    bomb = gzip.compress(b"\x0a" * (50 * 1024 * 1024))  # 50 MiB of zeros -> ~50 KiB
    r = collector.post(bomb, {**PROTO, "Content-Encoding": "gzip"})
    assert r.status_code == 413
    r = collector.post(b"\0" * (3 * 1024 * 1024), PROTO)
    assert r.status_code == 413
    assert _total(collector.store) == before
    assert requests.get(collector.url.replace("/v1/traces", "/healthz"), timeout=5).ok


def _valid_body() -> bytes:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return encode_spans(_spans(6, "fuzz", run_id="fuzz-run")).SerializeToString()


_VALID = None


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["random", "truncated", "flipped", "json", "gzip-garbage"]),
       data=st.binary(max_size=300), cut=st.integers(min_value=0, max_value=10_000))
def test_hostile_payloads_right_status_nothing_stored_still_serving(collector, kind, data, cut):
    global _VALID
    _VALID = _VALID or _valid_body()
    headers = dict(PROTO)
    if kind == "random":
        body = data
    elif kind == "truncated":
        body = _VALID[: cut % len(_VALID)]
    elif kind == "flipped":
        b = bytearray(_VALID)
        for i, x in enumerate(data[:20]):
            b[(cut + i * 997) % len(b)] ^= x or 1
        body = bytes(b)
    elif kind == "json":
        body, headers = data, dict(JSON)
    else:
        body = gzip.compress(_VALID)[: cut % 200] + data
        headers["Content-Encoding"] = "gzip"
    before = _total(collector.store)
    r = collector.post(body, headers)
    assert r.status_code in (200, 400, 413), r.text
    if r.status_code != 200:
        assert _total(collector.store) == before, "a rejected request stored spans"
        if headers["Content-Type"] == "application/json":
            assert "message" in r.json()
        else:
            status_pb2.Status.FromString(r.content)
    else:
        resp = (r.json() if kind == "json" else
                trace_service_pb2.ExportTraceServiceResponse.FromString(r.content))
        assert resp is not None
    assert collector.proc.poll() is None


def test_pressure_answers_503_with_retry_after_then_recovers(tmp_path):
    run = start(CollectorConfig(store=str(tmp_path), port=0, grpc_port=-1,
                                max_inflight_bytes=50))
    try:
        url = f"http://127.0.0.1:{run.http_port}/v1/traces"
        slow = socket.create_connection(("127.0.0.1", run.http_port))
        slow.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/"
                     b"x-protobuf\r\nContent-Length: 100\r\n\r\n" + b"0123456789" * 6)
        _wait_for(lambda: run.collector.held == 60)  # read and held: over the 50-byte budget
        r = requests.post(url, data=b"", headers=PROTO, timeout=10)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert run.collector.stats.throttled == 1
        slow.sendall(b"x" * 40)  # its own bytes are never refused: it finishes
        slow.settimeout(10)
        assert slow.recv(100).startswith(b"HTTP/1.1 200")  # (unknown fields: no spans)
        slow.close()
        _wait_for(lambda: requests.post(url, data=b"", headers=PROTO, timeout=10).ok)
        assert run.collector.held == 0
    finally:
        run.stop()


def test_http_bodies_are_decoded_and_stored_on_the_event_loops_thread(tmp_path, monkeypatch):
    """No hand-off to a decode pool (two thread wake-ups and a GIL ping-pong per request),
    and the 200 still comes only once the spans are in the WAL."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from slo.ingest import otlp
    from slo.ingest.store import StoreWriter

    threads: list[str] = []
    decode, commit = otlp.decode, StoreWriter.commit

    def watched_decode(*a, **kw):
        threads.append("decode " + threading.current_thread().name)
        return decode(*a, **kw)

    def watched_commit(self, table):
        threads.append("commit " + threading.current_thread().name)
        return commit(self, table)

    monkeypatch.setattr(otlp, "decode", watched_decode)
    monkeypatch.setattr(StoreWriter, "commit", watched_commit)
    run = start(CollectorConfig(store=str(tmp_path), port=0, grpc_port=-1))
    try:
        body = encode_spans(_spans(10, "svc", run_id="loop-run")).SerializeToString()
        for _ in range(3):
            r = requests.post(f"http://127.0.0.1:{run.http_port}/v1/traces", data=body,
                              headers=PROTO, timeout=10)
            assert r.status_code == 200
        assert SpanStore(tmp_path).read("loop-run").num_rows == 30  # in the WAL when acked
        assert threads == ["decode otlp-http", "commit otlp-http"] * 3
    finally:
        run.stop()


def test_sized_bodies_bypass_h11_keep_alive_and_pipelining_still_work(tmp_path, monkeypatch):
    """A Content-Length body goes from the socket to the decoder without being taken out of
    h11's buffer piece by piece (two more copies of every byte); h11 parses only the heads.
    A body that comes after its head, one that comes with it, and requests pipelined behind
    a body on one connection are all answered in order, and the connection stays open."""
    import h11

    events: list[str] = []
    next_event = h11.Connection.next_event

    def watched(self):
        ev = next_event(self)
        events.append(type(ev).__name__)
        return ev

    monkeypatch.setattr(h11.Connection, "next_event", watched)
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    body = encode_spans(_spans(40, "svc", run_id="sized")).SerializeToString()
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    run = start(CollectorConfig(store=str(tmp_path), port=0, grpc_port=-1))
    try:
        s = socket.create_connection(("127.0.0.1", run.http_port))
        s.settimeout(10)
        answers = b""

        def answered(n: int) -> None:
            nonlocal answers
            while answers.count(b"HTTP/1.1 200 ") < n:
                data = s.recv(65536)
                assert data, answers
                answers += data

        s.sendall(head)  # the body after its head
        time.sleep(0.2)
        s.sendall(body)
        answered(1)
        s.sendall(head + body)  # with it
        answered(2)
        s.sendall((head + body) * 3)  # pipelined
        answered(5)
        s.close()
        assert SpanStore(tmp_path).read("sized").num_rows == 5 * 40
        assert events.count("Request") == 5 and "Data" not in events, events
    finally:
        run.stop()


def test_connection_flood_is_capped(tmp_path):
    run = start(CollectorConfig(store=str(tmp_path), port=0, grpc_port=-1, max_connections=3))
    idle = []
    try:
        for _ in range(3):  # connections that never send a request hold every slot
            idle.append(socket.create_connection(("127.0.0.1", run.http_port)))
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", run.http_port))
        extra.settimeout(10)
        assert extra.recv(200).startswith(b"HTTP/1.1 503")
        extra.close()
        for s in idle:
            s.close()
        url = f"http://127.0.0.1:{run.http_port}/v1/traces"
        _wait_for(lambda: requests.post(url, data=b"", headers=PROTO, timeout=10).ok)
    finally:
        run.stop()


def test_token_required_on_both_protocols_and_forwarding(tmp_path):
    sink = start(CollectorConfig(store=str(tmp_path / "sink"), port=0, grpc_port=-1))
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # a port nobody answers on
    run = start(CollectorConfig(store=str(tmp_path / "a"), port=0, grpc_port=0, token="s3cret",
                                forward=f"http://127.0.0.1:{sink.http_port}"))
    run_dead = start(CollectorConfig(store=str(tmp_path / "b"), port=0, grpc_port=-1,
                                     forward=f"http://127.0.0.1:{dead.getsockname()[1]}"))
    try:
        url = f"http://127.0.0.1:{run.http_port}/v1/traces"
        spans = _spans(10, "tok", run_id="tok-run")
        assert HttpExporter(endpoint=url).export(spans) == SpanExportResult.FAILURE
        assert requests.post(url, data=b"", headers=PROTO, timeout=10).status_code == 401
        ge = GrpcExporter(endpoint=f"127.0.0.1:{run.grpc_port}", insecure=True, timeout=5)
        assert ge.export(spans) == SpanExportResult.FAILURE
        ge.shutdown()
        auth = {"authorization": "Bearer s3cret"}
        assert HttpExporter(endpoint=url, headers=auth).export(spans) == SpanExportResult.SUCCESS
        ge = GrpcExporter(endpoint=f"127.0.0.1:{run.grpc_port}", insecure=True, headers=auth)
        assert ge.export(spans) == SpanExportResult.SUCCESS
        ge.shutdown()
        assert SpanStore(tmp_path / "a").read("tok-run").num_rows == 20
        _wait_for(lambda: _total(tmp_path / "sink") == 20)  # both copies forwarded
        # a dead forward target neither slows nor fails ingest
        url_b = f"http://127.0.0.1:{run_dead.http_port}/v1/traces"
        t0 = time.monotonic()
        for _ in range(5):
            assert HttpExporter(endpoint=url_b).export(spans) == SpanExportResult.SUCCESS
        assert time.monotonic() - t0 < 20
        assert SpanStore(tmp_path / "b").read("tok-run").num_rows == 50
    finally:
        for r in (run, run_dead, sink):
            r.stop()
        dead.close()


def test_forward_target_down_then_back_gets_everything(tmp_path):
    port = free_port()  # nobody listens there yet
    run = start(CollectorConfig(store=str(tmp_path / "a"), port=0, grpc_port=-1,
                                forward=f"http://127.0.0.1:{port}/"))
    url = f"http://127.0.0.1:{run.http_port}/v1/traces"
    try:
        for i in range(3):
            spans = _spans(10, "fw", run_id="fw-run", prefix=f"p{i}")
            assert HttpExporter(endpoint=url).export(spans) == SpanExportResult.SUCCESS
    finally:
        run.stop()  # target still down: the payloads wait in the spool
    assert len(list((tmp_path / "a" / "forward").iterdir())) == 3
    run = start(CollectorConfig(store=str(tmp_path / "a"), port=0, grpc_port=-1,
                                forward=f"http://127.0.0.1:{port}/"))
    sink = start(CollectorConfig(store=str(tmp_path / "sink"), port=port, grpc_port=-1))
    try:
        _wait_for(lambda: _total(tmp_path / "sink") == 30, timeout=30)
        _wait_for(lambda: not list((tmp_path / "a" / "forward").iterdir()))
    finally:
        run.stop()
        sink.stop()
    assert _total(tmp_path / "a") == 30


def test_kill_9_mid_stream_loses_no_acknowledged_span(tmp_path):
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    c = Collector(tmp_path, "--run-id", "k9")
    acked: list[set[str]] = [set(), set()]
    batches = [encode_spans(_spans(50, f"k{i}")) for i in range(2)]

    def sender(n: int):
        req = batches[n]
        session = requests.Session()
        for j in range(100_000):
            for k, s in enumerate(req.resource_spans[0].scope_spans[0].spans):
                s.span_id = (n << 60 | j << 8 | k + 1).to_bytes(8, "big")
            try:
                r = session.post(c.url, data=req.SerializeToString(), headers=PROTO, timeout=10)
            except requests.RequestException:
                return
            if r.status_code == 200:
                acked[n].update(f"{n << 60 | j << 8 | k + 1:016x}" for k in range(50))

    seen: list[int] = []

    def reader():  # a reader querying while the collector writes
        store = SpanStore(tmp_path)
        while c.proc.poll() is None:
            try:
                ids = store.read("k9")["span_id"].to_pylist()
            except SourceError:
                continue  # nothing stored yet
            seen.append(len(ids) if len(ids) == len(set(ids)) else -1)  # -1: a duplicate

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(2)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    _wait_for(lambda: min(len(a) for a in acked[:2]) >= 1000 and len(seen) >= 3, timeout=60)
    os.kill(c.proc.pid, signal.SIGKILL)
    for t in threads:
        t.join(30)
    assert -1 not in seen, "the reader saw a span twice"
    assert seen == sorted(seen) and seen[-1] > 0, "the reader saw spans vanish or none at all"
    c.proc.wait(10)
    want = acked[0] | acked[1]
    c2 = Collector(tmp_path, "--run-id", "k9")  # restart replays the WAL
    try:
        got = SpanStore(tmp_path).read("k9")["span_id"].to_pylist()
        assert len(got) == len(set(got)), "a span stored twice"
        assert want <= set(got), f"{len(want - set(got))} acknowledged spans lost"
        assert not list((tmp_path / "wal").glob("*.arrows"))  # compacted on restart
    finally:
        assert c2.stop(signal.SIGINT) == 0  # Ctrl-C is a clean stop too
    res = CliRunner().invoke(slo_main, ["runs", "--store", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    (info,) = json.loads(res.output)["runs"]
    assert info["run_id"] == "k9" and info["spans"] == len(got)
    res = CliRunner().invoke(slo_main, ["runs", "--store", str(tmp_path)])
    assert res.exit_code == 0 and re.search(rf"^k9 +{len(got)} +\d+ ", res.output, re.M), res.output
    res = CliRunner().invoke(slo_main, ["runs", "--store", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no span store" in res.output
