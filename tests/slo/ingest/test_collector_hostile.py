"""`slo collect` against slow, many and impatient senders: slow bodies, header slowloris,
bursts of small exports, gRPC back-pressure seen by the real SDK exporter, HTTP niceties."""

from __future__ import annotations

import json
import socket
import threading
import time

import grpc
import requests
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcExporter,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace.export import SpanExportResult
from test_collector import JSON, PROTO, _spans, _wait_for

from slo.ingest.collector import CollectorConfig, start
from slo.ingest.store import SpanStore

HEAD = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Content-Length: 100000\r\n\r\n")


def _body(n: int, run_id: str, prefix: str = "op") -> bytes:
    return encode_spans(_spans(n, "hostile", run_id=run_id, prefix=prefix)).SerializeToString()


def _timed_post(url: str, body: bytes) -> tuple[int, float]:
    t = time.monotonic()
    r = requests.post(url, data=body, headers=PROTO, timeout=10)
    return r.status_code, time.monotonic() - t


def test_slow_bodies_do_not_lock_out_other_senders(tmp_path):
    run = start(CollectorConfig(store=str(tmp_path), port=0, grpc_port=-1))
    slow = []
    try:
        url = f"http://127.0.0.1:{run.http_port}/v1/traces"
        for _ in range(8):  # each declares 100 kB and sends one byte
            s = socket.create_connection(("127.0.0.1", run.http_port))
            s.sendall(HEAD + b"\x0a")
            slow.append(s)
        _wait_for(lambda: run.collector.held == 8)
        body = _body(20, "slow-run")
        answers = [_timed_post(url, body) for _ in range(10)]
        assert [code for code, _ in answers] == [200] * 10
        assert max(t for _, t in answers) < 1.0, answers
        assert SpanStore(tmp_path).read("slow-run").num_rows == 200
        assert run.collector.stats.throttled == 0
    finally:
        for s in slow:
            s.close()
        run.stop()


def test_header_slowloris_is_cut_off_and_never_starves_others(tmp_path):
    run = start(CollectorConfig(store=str(tmp_path), port=0, grpc_port=-1,
                                header_timeout_s=1.5))
    conns = [socket.create_connection(("127.0.0.1", run.http_port)) for _ in range(300)]
    stop = threading.Event()
    closed: set[int] = set()

    def trickle():  # one header byte per connection every 0.2 s, for as long as it is let
        while not stop.is_set():
            for i, s in enumerate(conns):
                if i in closed:
                    continue
                try:
                    s.sendall(b"P" if s.fileno() >= 0 else b"")
                except OSError:
                    closed.add(i)
            stop.wait(0.2)

    t = threading.Thread(target=trickle)
    t.start()
    try:
        url = f"http://127.0.0.1:{run.http_port}/v1/traces"
        body = _body(10, "loris-run")
        time.sleep(0.5)  # all 300 are open and trickling
        answers = [_timed_post(url, body) for _ in range(5)]
        assert [code for code, _ in answers] == [200] * 5
        assert max(d for _, d in answers) < 1.0, answers
        _wait_for(lambda: len(closed) == len(conns), timeout=10)  # cut off though trickling
        assert SpanStore(tmp_path).read("loris-run").num_rows == 50
    finally:
        stop.set()
        t.join()
        for s in conns:
            s.close()
        run.stop()


def test_burst_of_concurrent_small_exports_all_answered_200(tmp_path):
    """Like the OpenTelemetry JS SDK: many small exports in flight at once (the old receiver
    answered 25 of these 40 with 503)."""
    run = start(CollectorConfig(store=str(tmp_path), port=0, grpc_port=-1))
    conns = [socket.create_connection(("127.0.0.1", run.http_port)) for _ in range(40)]
    try:
        requests_ = []
        for i in range(len(conns)):
            body = _body(20, "burst-run", prefix=f"b{i}")
            requests_.append(HEAD.replace(b"100000", str(len(body)).encode()) + body)
        for s, r in zip(conns, requests_, strict=True):  # all in flight at once
            s.sendall(r)
        codes = []
        for s in conns:
            s.settimeout(10)
            codes.append(s.recv(64).split(b" ")[1])
        assert codes == [b"200"] * len(conns)
        assert SpanStore(tmp_path).read("burst-run").num_rows == 20 * len(conns)
    finally:
        for s in conns:
            s.close()
        run.stop()


def test_grpc_overload_is_unavailable_with_retryinfo_and_the_sdk_loses_nothing(tmp_path):
    run = start(CollectorConfig(store=str(tmp_path), port=0, grpc_port=0,
                                max_inflight_bytes=50))
    slow = socket.create_connection(("127.0.0.1", run.http_port))
    try:
        slow.sendall(HEAD.replace(b"100000", b"100") + b"0123456789" * 6)
        _wait_for(lambda: run.collector.held == 60)  # the memory budget is full
        channel = grpc.insecure_channel(f"127.0.0.1:{run.grpc_port}")
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString)
        try:
            export(_body(4, "raw"), timeout=10)
            raise AssertionError("an export was accepted over the memory budget")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE  # retryable, unlike RESOURCE_EXHAUSTED
            trailers = dict(e.trailing_metadata())
        channel.close()
        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
        info = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(info) and info.retry_delay.seconds == 1
        assert run.collector.stats.throttled == 1

        spans = _spans(40, "grpc-sdk", run_id="grpc-retry")
        result: list[SpanExportResult] = []
        exporter = GrpcExporter(endpoint=f"127.0.0.1:{run.grpc_port}", insecure=True, timeout=20)
        t = threading.Thread(target=lambda: result.append(exporter.export(spans)))
        t.start()
        _wait_for(lambda: run.collector.stats.throttled >= 2)  # the SDK was told to wait
        slow.sendall(b"x" * 40)  # the slow sender finishes; the budget frees up
        t.join(30)
        exporter.shutdown()
        assert result == [SpanExportResult.SUCCESS]
        assert SpanStore(tmp_path).read("grpc-retry").num_rows == 40  # nothing lost
    finally:
        slow.close()
        run.stop()


def test_401_challenges_and_other_methods_get_405_with_allow(tmp_path):
    run = start(CollectorConfig(store=str(tmp_path), port=0, grpc_port=-1, token="s3cret"))
    try:
        url = f"http://127.0.0.1:{run.http_port}/v1/traces"
        r = requests.post(url, data=b"", headers=PROTO, timeout=10)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer ")
        r = requests.post(url, data=b"", headers={**PROTO, "Authorization": "Bearer nope"})
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
        for method in ("PUT", "DELETE", "PATCH", "GET"):
            r = requests.request(method, url, data=b"{}", headers=JSON, timeout=10)
            assert r.status_code == 405 and r.headers["Allow"] == "POST", method
            assert r.headers["Content-Type"] == "application/json"
            assert json.loads(r.content)["message"]
        r = requests.put(url, data=b"x", headers=PROTO, timeout=10)
        assert r.status_code == 405 and r.headers["Allow"] == "POST"
        assert status_pb2.Status.FromString(r.content).message
        assert requests.get(url.replace("/v1/traces", "/healthz"), timeout=10).text == "ok\n"
    finally:
        run.stop()


def test_concurrent_grpc_exports_are_queued_not_refused(tmp_path):
    """The old receiver's concurrent-RPC cap answered 32 of these 40 RESOURCE_EXHAUSTED (not
    to be retried, per the OTLP spec): data a forwarding Collector would have dropped."""
    run = start(CollectorConfig(store=str(tmp_path), port=0, grpc_port=0))
    channel = grpc.insecure_channel(f"127.0.0.1:{run.grpc_port}")
    try:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString)
        calls = [export.future(_body(200, "grpc-burst", prefix=f"g{i}"), timeout=30)
                 for i in range(40)]
        for call in calls:
            call.result()  # raises on any error status
        assert SpanStore(tmp_path).read("grpc-burst").num_rows == 40 * 200
    finally:
        channel.close()
        run.stop()


def test_a_body_slower_than_its_deadline_gets_408_and_the_connection_closes(tmp_path):
    run = start(CollectorConfig(store=str(tmp_path), port=0, grpc_port=-1, body_timeout_s=1.0))
    s = socket.create_connection(("127.0.0.1", run.http_port))
    try:
        s.sendall(HEAD)
        t0 = time.monotonic()
        s.settimeout(10)
        answer = b""
        while not answer.endswith(b"\r\n\r\n") and b"\r\n\r\n" not in answer:
            s.sendall(b"\x0a")  # a byte every 0.2 s: each read is quick, the whole is not
            time.sleep(0.2)
            s.setblocking(False)
            try:
                answer += s.recv(4096)
            except BlockingIOError:
                pass
            s.setblocking(True)
            assert time.monotonic() - t0 < 5, "the slow body was never cut off"
        assert answer.startswith(b"HTTP/1.1 408") and b"connection: close" in answer.lower()
        assert run.collector.held == 0
    finally:
        s.close()
        run.stop()
