"""The collector's decoder processes: decoding off the HTTP process, same answers, nothing
acknowledged lost when a decoder or the collector is killed, back-pressure still 503."""

from __future__ import annotations

import gzip
import os
import signal
import threading
import time
from pathlib import Path

import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcExporter,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace.export import SpanExportResult
from test_collector import PROTO, Collector, _spans, _total, _wait_for

from slo.ingest.collector import CollectorConfig, start
from slo.ingest.store import SpanStore


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(c) for c in task.read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start(tmp_path: Path, **kw):
    run = start(CollectorConfig(store=str(tmp_path), port=0, decoders_when_busy=0, **kw))
    assert run.collector.pool is not None
    _wait_for(lambda: len([1 for _ in run.collector.pool.pids()]) == run.collector.pool.size
              and run.collector.pool.ready, timeout=30)
    return run


_MADE: dict[tuple[int, str], bytes] = {}


def _request(n: int, run_id: str, first: int = 0) -> trace_service_pb2.ExportTraceServiceRequest:
    """n spans with span ids first+1 .. first+n (so what was acked can be checked)."""
    if (n, run_id) not in _MADE:  # (the SDK makes spans slower than the collector takes them)
        _MADE[n, run_id] = encode_spans(_spans(n, "dec", run_id=run_id)).SerializeToString()
    req = trace_service_pb2.ExportTraceServiceRequest.FromString(_MADE[n, run_id])
    for k, s in enumerate(req.resource_spans[0].scope_spans[0].spans):
        s.span_id = (first + k + 1).to_bytes(8, "big")
    return req


def test_decoded_in_decoder_processes_same_answers_partial_success_and_errors(tmp_path):
    """HTTP and gRPC bodies are decoded by the decoder processes (the collector's own writer
    writes nothing), stored before the 200, with the rejected spans counted in
    partial_success, and forwarded; a malformed body is 400, a too large one 413, and
    nothing of either is stored or forwarded."""
    sink = start(CollectorConfig(store=str(tmp_path / "sink"), port=0, grpc_port=-1,
                                 decoders=0))
    run = _start(tmp_path / "a", decoders=2, max_body=1 << 20,
                 forward=f"http://127.0.0.1:{sink.http_port}")
    tmp_path = tmp_path / "a"
    try:
        url = f"http://127.0.0.1:{run.http_port}/v1/traces"
        req = _request(20, "dec-run")
        req.resource_spans[0].scope_spans[0].spans[3].trace_id = b"\x01\x02"  # unusable id
        r = requests.post(url, data=gzip.compress(req.SerializeToString()),
                          headers={**PROTO, "Content-Encoding": "gzip"}, timeout=10)
        assert r.status_code == 200
        resp = trace_service_pb2.ExportTraceServiceResponse.FromString(r.content)
        assert resp.partial_success.rejected_spans == 1
        assert "trace" in resp.partial_success.error_message
        assert SpanStore(tmp_path).read("dec-run").num_rows == 19  # in the WAL when acked
        for bad, headers, status in (
                (b"\x0a\xff\xff\xff garbage", PROTO, 400),
                (b"not gzip at all", {**PROTO, "Content-Encoding": "gzip"}, 400),
                (b"{not json", {"Content-Type": "application/json"}, 400),
                (gzip.compress(b"\0" * (2 << 20)), {**PROTO, "Content-Encoding": "gzip"}, 413)):
            assert requests.post(url, data=bad, headers=headers, timeout=10).status_code == status
        exporter = GrpcExporter(endpoint=f"127.0.0.1:{run.grpc_port}", insecure=True)
        assert exporter.export(_spans(10, "grpc-dec", run_id="dec-run")) == \
            SpanExportResult.SUCCESS
        exporter.shutdown()
        assert SpanStore(tmp_path).read("dec-run").num_rows == 29
        stats = run.collector.stats
        assert (stats.spans, stats.rejected_spans, stats.bad_requests) == (29, 1, 4)
        assert run.collector.writer.spans_written == 0, "decoded in the collector's process"
        pids = run.collector.pool.pids()
        # forwarded as received (the sink refuses the bad span too), the bad bodies not
        _wait_for(lambda: _total(tmp_path.parent / "sink") == 29)
    finally:
        run.stop()
        sink.stop()
    assert not any(_alive(p) for p in pids), "a decoder outlived a clean stop"
    assert not list((tmp_path / "wal").glob("seg-*")), "a clean stop compacts every segment"
    t = SpanStore(tmp_path).read("dec-run")
    assert t.num_rows == 29 and len(set(t["span_id"].to_pylist())) == 29


def test_a_decoder_killed_mid_stream_loses_no_acknowledged_span_and_is_replaced(tmp_path):
    run = _start(tmp_path, decoders=2, grpc_port=-1)
    url = f"http://127.0.0.1:{run.http_port}/v1/traces"
    acked: set[int] = set()
    answers: list[int] = []
    stop = threading.Event()

    def sender(n: int) -> None:
        s = requests.Session()
        j = 0
        while not stop.is_set():
            first = (n << 40) | (j << 8)
            r = s.post(url, data=_request(40, "dk", first).SerializeToString(), headers=PROTO,
                       timeout=10)
            answers.append(r.status_code)
            if r.status_code == 200:
                acked.update(range(first + 1, first + 41))
            j += 1

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(3)]
    try:
        for t in threads:
            t.start()
        _wait_for(lambda: len(acked) >= 2000, timeout=60)
        victim = run.collector.pool.pids()[0]
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: run.collector.pool.deaths == 1 and run.collector.pool.ready
                  and len(run.collector.pool.pids()) == 2 and victim not in
                  run.collector.pool.pids(), timeout=30)
        before = len(acked)
        _wait_for(lambda: len(acked) >= before + 2000, timeout=60)  # served on after it
        # the dead decoder's segment is compacted while the collector runs
        _wait_for(lambda: not [p for p in (tmp_path / "wal").glob("seg-*.arrows")
                               if p.stat().st_size and not _open_by_a_decoder(run, p)],
                  timeout=30)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        run.stop()
    assert set(answers) <= {200, 503}, set(answers)
    got = SpanStore(tmp_path).read("dk")["span_id"].to_pylist()
    assert {int(x, 16) for x in got} >= acked, "an acknowledged span was lost"


def _open_by_a_decoder(run, path: Path) -> bool:
    """True if a live decoder has this segment open (it is still being written)."""
    for pid in run.collector.pool.pids():
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == str(path):
                    return True
            except OSError:
                continue
    return False


def test_killing_the_collector_kills_its_decoders_and_a_restart_loses_nothing(tmp_path):
    """A stream that keeps the collector's core busy starts its decoder processes by itself;
    a kill -9 of the collector takes them down too, and a restart has every acked span."""
    c = Collector(tmp_path, "--run-id", "k9d", "--decoders", "2")
    acked: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def sender(n: int) -> None:
        s = requests.Session()
        j = 0
        while not stop.is_set():
            first = (n << 40) | (j << 10)
            try:
                r = s.post(c.url, data=_request(500, "k9d", first).SerializeToString(),
                           headers=PROTO, timeout=10)
            except requests.RequestException:
                return
            if r.status_code == 200:
                with lock:
                    acked.update(range(first + 1, first + 501))
            j += 1

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(3)]
    try:
        for t in threads:
            t.start()
        _wait_for(lambda: len(_children(c.proc.pid)) == 2 and len(acked) >= 30_000, timeout=60)
        decoders = _children(c.proc.pid)
        os.kill(c.proc.pid, signal.SIGKILL)
        c.proc.wait(10)
        _wait_for(lambda: not any(_alive(p) for p in decoders), timeout=10)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        c.stop()
    c2 = Collector(tmp_path, "--run-id", "k9d")  # takes the store: no decoder holds it
    try:
        got = SpanStore(tmp_path).read("k9d")["span_id"].to_pylist()
        assert len(got) == len(set(got)) == _total(tmp_path)
        assert {int(x, 16) for x in got} >= acked
        assert not list((tmp_path / "wal").glob("seg-*"))
    finally:
        assert c2.stop() == 0


def test_a_trickle_starts_no_decoder_process(tmp_path):
    """Decoder processes cost memory and a start-up: a collector that decodes now and then
    (a test's spans, a gate's batches) decodes in its own process."""
    run = start(CollectorConfig(store=str(tmp_path), port=0, grpc_port=-1, decoders=2))
    try:
        url = f"http://127.0.0.1:{run.http_port}/v1/traces"
        body = _request(100, "tr").SerializeToString()
        for _ in range(15):
            assert requests.post(url, data=body, headers=PROTO, timeout=10).status_code == 200
            time.sleep(0.05)
        assert run.collector.pool is not None and not run.collector.pool.started
        assert not _children(os.getpid()) or all(
            "slo.ingest.decoders" not in Path(f"/proc/{p}/cmdline").read_text()
            for p in _children(os.getpid()))
    finally:
        run.stop()
    assert SpanStore(tmp_path).read("tr").num_rows == 1500


def test_back_pressure_503_while_decoders_are_behind_then_everything_is_stored(tmp_path):
    """Bodies waiting for a decoder are held: past the memory budget the answer is 503 +
    Retry-After; once the decoder catches up every retried body is stored once."""
    body = _request(200, "bp").SerializeToString()
    run = _start(tmp_path, decoders=1, grpc_port=-1, max_inflight_bytes=4 * len(body))
    url = f"http://127.0.0.1:{run.http_port}/v1/traces"
    (decoder,) = run.collector.pool.pids()
    codes: list[int] = []
    retry_after: set[str] = set()
    try:
        os.kill(decoder, signal.SIGSTOP)  # a decoder that has fallen behind
        results: list[requests.Response] = []

        def post() -> None:
            results.append(requests.post(url, data=body, headers=PROTO, timeout=30))

        threads = [threading.Thread(target=post) for _ in range(10)]
        for t in threads:
            t.start()
        _wait_for(lambda: len(results) >= 5, timeout=20)  # the ones over budget, at once
        assert all(r.status_code == 503 for r in results), [r.status_code for r in results]
        retry_after = {r.headers.get("Retry-After", "") for r in results}
        os.kill(decoder, signal.SIGCONT)
        for t in threads:
            t.join(30)
        codes = [r.status_code for r in results]
        assert codes.count(200) == 10 - codes.count(503)
        assert run.collector.stats.throttled == codes.count(503)
        _wait_for(lambda: run.collector.held == 0)
        for _ in range(codes.count(503)):  # the senders retry
            assert requests.post(url, data=body, headers=PROTO, timeout=30).status_code == 200
    finally:
        os.kill(decoder, signal.SIGCONT)
        run.stop()
    assert retry_after == {"1"}
    assert 5 <= codes.count(503) <= 7
    # the same 200 spans each time: 10 acknowledged copies
    assert SpanStore(tmp_path).read("bp").num_rows == 10 * 200
