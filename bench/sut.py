"""Benchmark of the system under test, measured in one run on this machine:

1. order-detail throughput (GET /orders/<id>, all five services) with tracing on (OTLP export
   to a local sink) vs OTEL_SDK_DISABLED=true: the ratio is the tracing overhead; beside it
   the CPU time the five services spent per request, whose ratio (untraced / traced) is what
   the throughput ratio becomes on a CPU-bound machine, and which other processes' load moves
   far less than it moves the throughput;
2. the stock look-up's median time with `missing_index` vs without (cache bypassed so every
   look-up reaches the database): the database span's median from the exported traces and
   the HTTP median seen by the client. The DB ratio should be well over 10x.

    .venv/bin/python bench/sut.py [--seconds 8] [--clients 8] [--lookups 200]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

# this file is bench/sut.py: keep its directory from shadowing the `sut` package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from slo.ports import free_port_range  # noqa: E402
from slo.supervisor import Supervisor  # noqa: E402
from sut import seed  # noqa: E402

SUT = str(Path(sys.executable).with_name("sut"))


class Sink:
    """OTLP/HTTP receiver that keeps raw bodies (decoded after the measurement)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                sink.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def db_span_ms(self, needle: str) -> list[float]:
        out = []
        for body in self.bodies:
            for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        if any(a.key == "db.statement" and needle in a.value.string_value
                               for a in s.attributes):
                            out.append((s.end_time_unix_nano - s.start_time_unix_nano) / 1e6)
        return out


def free_base() -> int:
    return free_port_range(5)


class Sut:
    """`sut up` on free ports, in its own process group under the project's supervisor."""

    def __init__(self, data_dir: Path, env: dict[str, str], bugs: str = "") -> None:
        self.base = free_base()
        log = data_dir / "sut-up.log"
        self.supervisor = Supervisor(error=SystemExit, tail_lines=30)
        self.proc = self.supervisor.spawn(
            "sut", [SUT, "up", "--data-dir", str(data_dir), "--base-port", str(self.base),
                    "--bugs", bugs],
            {**os.environ, "SUT_ADMIN_TOKEN": "bench", **env}, log=log)
        self.supervisor.wait_until("sut up", lambda: "sut ready" in log.read_text(errors="replace"),
                                   [self.proc], 240, interval=0.2)

    def cpu_seconds(self) -> float:
        """User + system CPU of `sut up` and every process under it (the gunicorn workers)."""
        root = psutil.Process(self.proc.pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
        return total

    def stop(self) -> None:
        self.supervisor.stop(timeout=60)


def get(conn: http.client.HTTPConnection, path: str) -> int:
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    return r.status


def throughput(port: int, seconds: float, clients: int) -> float:
    """Requests per second of GET /orders/<id> from `clients` keep-alive threads."""
    stop = time.monotonic() + seconds
    counts = [0] * clients

    def worker(i: int) -> None:
        rng = random.Random(i)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            if get(conn, f"/orders/{rng.randint(1, seed.ORDERS)}") == 200:
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def lookups(port: int, n: int) -> list[float]:
    """Client-side ms of n sequential stock look-ups of 3 random products."""
    rng = random.Random(7)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for _ in range(n):
        ids = ",".join(str(rng.randint(1, seed.PRODUCTS)) for _ in range(3))
        t = time.perf_counter()
        assert get(conn, f"/stock?product_ids={ids}") == 200
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--lookups", type=int, default=200)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sut-bench-"))
    try:
        t = time.monotonic()
        seed.ensure_seeded(str(tmp / "sut.db"))
        print(f"seeded SQLite in {time.monotonic() - t:.1f} s")
        sink = Sink()
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "500"}
        rps, cpu_ms = {}, {}
        for label, env in (("tracing on", traced), ("tracing off", {"OTEL_SDK_DISABLED": "true"})):
            sut = Sut(tmp, env)
            try:
                throughput(sut.base, 1.5, args.clients)  # warm-up: connections, caches
                cpu0 = sut.cpu_seconds()
                rps[label] = throughput(sut.base, args.seconds, args.clients)
                cpu_ms[label] = (sut.cpu_seconds() - cpu0) * 1000 / (rps[label] * args.seconds)
            finally:
                sut.stop()
            print(f"order throughput, {label:<11}: {rps[label]:7.1f} req/s "
                  f"({args.clients} clients, {args.seconds:.0f} s), SUT CPU "
                  f"{cpu_ms[label]:.2f} ms per request")
        print(f"ratio tracing on / off: {rps['tracing on'] / rps['tracing off']:.2f} "
              f"(SUT CPU per request off / on: {cpu_ms['tracing off'] / cpu_ms['tracing on']:.2f})")

        medians = {}
        for label, bugs in (("with index", "cache_bypass"), ("missing_index", "cache_bypass,missing_index")):
            sink.bodies.clear()
            sut = Sut(tmp, {**traced, "OTEL_BSP_SCHEDULE_DELAY": "200"}, bugs)
            try:
                client = lookups(sut.base + 3, args.lookups)
            finally:
                sut.stop()
            dbms = sink.db_span_ms("FROM inventory")
            medians[label] = (statistics.median(dbms), statistics.median(client))
            print(f"stock look-up, {label:<13}: DB span median {medians[label][0]:7.2f} ms, "
                  f"HTTP median {medians[label][1]:7.2f} ms ({len(dbms)} DB spans)")
        (db_on, http_on), (db_off, http_off) = medians["missing_index"], medians["with index"]
        print(f"ratio missing_index / index: DB span {db_on / db_off:.1f}x, HTTP {http_on / http_off:.1f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
