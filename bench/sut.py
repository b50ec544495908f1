"""Benchmark of the system under test, measured in one run on this machine:

1. tracing overhead of order-detail (GET /orders/<id>, all five services). The headline is
   the CPU time all SUT processes spend per request (user + system, psutil), traced (OTLP
   export to a local HTTP/1.1 sink, as to `slo collect`) vs untraced (OTEL_SDK_DISABLED=true):
   untraced / traced CPU per request is the throughput ratio a CPU-bound SUT reaches, and it
   moves far less than throughput when other processes load the machine. Every side's SUT is
   up at once; each round loads all of them at the same time, each from its own load process
   (`--alternate`: one after the other, rotated), so load from elsewhere falls on all of them
   alike. The traced side runs as under `slo gate` (`slo.gate.sut.LOAD_BATCH_DELAY_MS`);
   exports lag their requests, so a round's CPU may hold exports of the round before it (read
   `--settle` after each round); the headline sums all rounds. Printed: CPU per request over
   all rounds and the median and range of the rounds' own ratios, and throughput per round;
2. the stock look-up's median time with `missing_index` vs without (cache bypassed so every
   look-up reaches the database): the database span's median from the exported traces and
   the HTTP median seen by the client. The DB ratio should be well over 10x.

    .venv/bin/python bench/sut.py [--seconds 3] [--rounds 20] [--clients 8] [--lookups 200]
        [--alternate] [--variant 'LABEL:NAME=VALUE ...'] [--ref-sut PATH]

`--variant` adds a traced SUT with extra environment: other exporter or batch settings
(`bsp200:OTEL_BSP_SCHEDULE_DELAY=200`, the gate's setting before issue 12), or another
checkout's code for a before/after in the same run (`main:PYTHONPATH=/path/to/checkout`:
PYTHONPATH wins over the editable install). `--ref-sut` adds a traced SUT started by another
checkout's `sut` executable. On a loaded 2-core machine single rounds still differ by +-15%:
use 20 or more short rounds.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

# this file is bench/sut.py: keep its directory from shadowing the `sut` package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from slo.gate.sut import LOAD_BATCH_DELAY_MS  # noqa: E402
from slo.locust.context import baggage, traceparent  # noqa: E402  (plain Python, no Locust)
from slo.ports import free_port_range  # noqa: E402
from slo.supervisor import Supervisor  # noqa: E402
from sut import seed  # noqa: E402

SUT = str(Path(sys.executable).with_name("sut"))
RUN_BAGGAGE = baggage("bench-sut")


class Sink:
    """OTLP/HTTP receiver (HTTP/1.1 keep-alive, as `slo collect`): counts spans' bytes, and
    keeps raw bodies only when asked (decoded after the measurement)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.keep = False
        self.received = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.received += len(body)
                if sink.keep:
                    sink.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
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

    def __init__(self, data_dir: Path, env: dict[str, str], bugs: str = "", sut: str = SUT) -> None:
        self.base = free_base()
        log = data_dir / "sut-up.log"
        self.supervisor = Supervisor(error=SystemExit, tail_lines=30)
        self.proc = self.supervisor.spawn(
            "sut", [sut, "up", "--data-dir", str(data_dir), "--base-port", str(self.base),
                    "--bugs", bugs],
            {**os.environ, "SUT_ADMIN_TOKEN": "bench", **env}, log=log,
            # not the checkout: gunicorn puts its working directory first on sys.path, where a
            # checkout's sut/ would beat a variant's PYTHONPATH
            cwd=data_dir)
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


def get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None) -> int:
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    r.read()
    return r.status


def load(port: int, seconds: float, clients: int, seed_: int = 0) -> int:
    """Completed GET /orders/<id> (status 200) in `seconds` from `clients` keep-alive threads,
    each request with the headers the Locust plugin sends (traceparent, baggage with the run id:
    the services copy it onto every span)."""
    stop = time.monotonic() + seconds
    counts = [0] * clients

    def worker(i: int) -> None:
        rng = random.Random(seed_ * 1000 + i)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            headers = {"traceparent": traceparent(), "baggage": RUN_BAGGAGE}
            if get(conn, f"/orders/{rng.randint(1, seed.ORDERS)}", headers) == 200:
                counts[i] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def _load_child(port: int, seconds: float, clients: int, seed_: int, out: Any) -> None:
    out.put(load(port, seconds, clients, seed_))


def simultaneous(ports: list[int], seconds: float, clients: int, seed_: int) -> list[int]:
    """`load` on every port at the same time, each from its own process (no shared GIL), so
    whatever else the machine does in those seconds falls on every side alike."""
    ctx = multiprocessing.get_context("fork")
    queues = [ctx.Queue() for _ in ports]
    procs = [ctx.Process(target=_load_child, args=(port, seconds, clients, seed_, q))
             for port, q in zip(ports, queues, strict=True)]
    for p in procs:
        p.start()
    counts = [q.get(timeout=seconds + 120) for q in queues]
    for p in procs:
        p.join()
    return counts


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


@dataclass
class Side:
    """One SUT taking turns with the others: its environment and its slices' measurements."""

    label: str
    env: dict[str, str]
    sut: str = SUT
    requests: list[int] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def cpu_ms(self, i: int | None = None) -> float:
        """CPU ms per request: of slice i, or of all slices together."""
        if i is not None:
            return self.cpu[i] * 1000 / max(self.requests[i], 1)
        return sum(self.cpu) * 1000 / max(sum(self.requests), 1)

    def rps(self, i: int) -> float:
        return self.requests[i] / self.wall[i]


def parse_variant(text: str, traced: dict[str, str]) -> Side:
    label, _, assigns = text.partition(":")
    env = dict(traced)
    for a in assigns.split():
        name, eq, value = a.partition("=")
        if not eq:
            raise SystemExit(f"--variant {text!r}: expected 'LABEL:NAME=VALUE ...', got {a!r}")
        env[name.strip()] = value
    return Side(label.strip() or text, env)


def overhead(tmp: Path, sides: list[Side], args: argparse.Namespace) -> None:
    """All sides up at once, then rounds of one slice each (order rotated per round)."""
    suts: list[Sut] = []
    try:
        for i, side in enumerate(sides):
            data = tmp / f"side{i}"
            data.mkdir()
            shutil.copy(tmp / "sut.db", data / "sut.db")
            suts.append(Sut(data, side.env, sut=side.sut))
        for sut in suts:
            load(sut.base, 1.5, args.clients)  # warm-up: connections, caches, first exports
        time.sleep(args.settle)
        pairs = list(zip(sides, suts, strict=True))
        for r in range(args.rounds):
            if args.alternate:
                k = r % len(sides)
                for side, sut in pairs[k:] + pairs[:k]:
                    cpu0, t0 = sut.cpu_seconds(), time.monotonic()
                    n = load(sut.base, args.seconds, args.clients, seed_=r)
                    wall = time.monotonic() - t0
                    time.sleep(args.settle)  # the batch processor exports what the slice recorded
                    side.cpu.append(sut.cpu_seconds() - cpu0)
                    side.requests.append(n)
                    side.wall.append(wall)
                continue
            cpu0 = [sut.cpu_seconds() for sut in suts]
            t0 = time.monotonic()
            counts = simultaneous([sut.base for sut in suts], args.seconds, args.clients, r)
            wall = time.monotonic() - t0
            time.sleep(args.settle)
            for (side, sut), c0, n in zip(pairs, cpu0, counts, strict=True):
                side.cpu.append(sut.cpu_seconds() - c0)
                side.requests.append(n)
                side.wall.append(wall)
    finally:
        for sut in suts:
            sut.stop()

    how = "one side after the other, rotated" if args.alternate else "all sides at once, one load process each"
    print(f"order-detail, {args.rounds} rounds x {args.seconds:g} s ({how}), {args.clients} clients per side, "
          f"load average at the end {os.getloadavg()[0]:.2f}")
    for side in sides:
        per = [side.cpu_ms(i) for i in range(len(side.cpu))]
        rps = [side.rps(i) for i in range(len(side.cpu))]
        print(f"  {side.label:<16} SUT CPU {side.cpu_ms():6.2f} ms/request "
              f"(rounds {min(per):.2f}-{max(per):.2f}), throughput median {statistics.median(rps):6.1f} req/s "
              f"(rounds {min(rps):.1f}-{max(rps):.1f})")
    base = {s.label: s for s in sides}
    traced, untraced = base["traced"], base["untraced"]

    def ratios(a: Side, b: Side) -> tuple[float, float, float, float, float]:
        """b's CPU per request over a's: all slices together, then the median, lowest and
        highest of the rounds' own ratios; and the median of the rounds' throughput a/b."""
        per = [b.cpu_ms(i) / a.cpu_ms(i) for i in range(args.rounds)]
        thr = statistics.median(a.rps(i) / b.rps(i) for i in range(args.rounds))
        return b.cpu_ms() / a.cpu_ms(), statistics.median(per), min(per), max(per), thr

    c, med, lo, hi, thr = ratios(traced, untraced)
    print(f"traced / untraced, CPU-bound throughput (untraced / traced CPU per request): {c:.3f} "
          f"(median of rounds {med:.3f}, {lo:.3f}-{hi:.3f}); measured throughput ratio, "
          f"median of rounds: {thr:.2f}")
    for side in sides:
        if side in (traced, untraced):
            continue
        c, med, lo, hi, thr = ratios(side, untraced)
        v, vmed, vlo, vhi, _ = ratios(traced, side)
        print(f"{side.label} / untraced: {c:.3f} (median of rounds {med:.3f}, {lo:.3f}-{hi:.3f}); "
              f"CPU per request vs traced: {side.cpu_ms():.2f} vs {traced.cpu_ms():.2f} ms, x{v:.3f} "
              f"(median of rounds x{vmed:.3f}, x{vlo:.3f}-x{vhi:.3f}); throughput ratio {thr:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--alternate", action="store_true",
                    help="load one side at a time (rotated) instead of all sides at once")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds after a slice before its CPU is read (exports of its spans)")
    ap.add_argument("--lookups", type=int, default=200, help="0 skips the missing_index part")
    ap.add_argument("--variant", action="append", default=[],
                    help="'LABEL:NAME=VALUE ...': one more traced SUT with this extra environment")
    ap.add_argument("--ref-sut", help="one more traced SUT from this `sut` executable (another checkout)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sut-bench-"))
    try:
        t = time.monotonic()
        seed.ensure_seeded(str(tmp / "sut.db"))
        print(f"seeded SQLite in {time.monotonic() - t:.1f} s")
        sink = Sink()
        # as `slo gate` runs the SUT (the rest flushed when the gate stops it)
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
                  "OTEL_BSP_SCHEDULE_DELAY": LOAD_BATCH_DELAY_MS}
        sides = [Side("traced", traced), Side("untraced", {"OTEL_SDK_DISABLED": "true"})]
        sides += [parse_variant(v, traced) for v in args.variant]
        if args.ref_sut:
            sides.append(Side("traced (ref)", traced, sut=args.ref_sut))
        overhead(tmp, sides, args)
        if args.lookups <= 0:
            return

        medians = {}
        sink.keep = True
        for label, bugs in (("with index", "cache_bypass"), ("missing_index", "cache_bypass,missing_index")):
            sink.bodies.clear()
            sut = Sut(tmp, traced, bugs)
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
