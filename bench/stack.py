"""Benchmark of the stack's two scaling knobs, as ratios measured in one run on this machine:

1. the SUT's order throughput (GET /orders/<id>: order-service and its four downstream calls)
   on PostgreSQL vs the default SQLite. Both SUTs run at once and are measured in alternating
   windows (A B B A ...), so drift of a shared machine hits both alike;
2. the load Locust reaches with the project's locustfile in one process vs `--processes 2`,
   and Locust's own CPU per request in each, which says where one process would saturate.

Tracing is off in the SUT (OTEL_SDK_DISABLED) and the plugin neither exports client spans nor
checks: this measures the database and the load generator, not the exporter.

    .venv/bin/python bench/stack.py [--seconds 12] [--clients 8] [--users 60] [--locust-seconds 10]

Needs the machine's PostgreSQL at 127.0.0.1:5432 (database `test`; the bench seeds its own
schema once) and nothing else.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from slo.ports import free_port_range
from slo.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_URL = "postgresql://127.0.0.1:5432/test?options=-csearch_path%3Dslo_bench_stack"
N_ORDERS = 50_000  # the SUT's seeded orders (sut.seed.ORDERS); ids 1..N


def free_base(n: int = 5) -> int:
    return free_port_range(n)


class Sut:
    """`sut up` on free ports, in its own process group under the project's supervisor."""

    def __init__(self, name: str, workdir: Path, db: str | None) -> None:
        self.name = name
        self.base = free_base()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SUT_", "OTEL_"))}
        env["OTEL_SDK_DISABLED"] = "true"
        cmd = [str(BIN / "sut"), "up", "--base-port", str(self.base),
               "--data-dir", str(workdir / name), "--workers", "1"]
        if db:
            cmd += ["--db", db]
        self.supervisor = Supervisor(workdir, error=SystemExit, tail_lines=30)
        self.proc = self.supervisor.spawn(name, cmd, env, cwd=ROOT)

    def wait_ready(self, timeout: float = 240) -> None:
        log = self.proc.log_path
        assert log is not None
        self.supervisor.wait_until(f"{self.name} SUT",
                                   lambda: "sut ready" in log.read_text(errors="replace"),
                                   [self.proc], timeout, interval=0.3)

    def stop(self) -> None:
        self.supervisor.stop(timeout=30)


def orders_per_second(port: int, seconds: float, clients: int) -> float:
    """Completed 200s per second from `clients` keep-alive connections for `seconds`."""
    done = [0] * clients
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        rng = random.Random(i)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            conn.request("GET", f"/orders/{rng.randint(1, N_ORDERS)}")
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                done[i] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - t0)


def locust_run(host: str, users: int, seconds: int, processes: int, workdir: Path) -> tuple[float, float]:
    """(requests per second, Locust CPU ms per request) of one headless run."""
    prefix = workdir / f"locust-p{processes}"
    cmd = [str(BIN / "locust"), "-f", "loadtests/locustfile.py", "--headless", "-u", str(users),
           "-r", str(users), "-t", f"{seconds}s", "--host", host, "--csv", str(prefix),
           "--only-summary", "--loglevel", "WARNING", "--slo-no-check",
           "--slo-store", str(workdir / "store")]
    if processes > 1:
        port = str(free_base(1))
        cmd += ["--processes", str(processes), "--master-bind-host", "127.0.0.1",
                "--master-bind-port", port, "--master-port", port]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "OTEL_"))}
    env["LOCUST_SLO_OTLP_ENDPOINT"] = "none"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds + 120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"locust --processes {processes} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    with open(f"{prefix}_stats.csv", newline="") as fh:
        total = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    requests = int(total["Request Count"])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return float(total["Requests/s"]), 1000.0 * cpu / max(1, requests)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=12.0, help="measured seconds per database")
    ap.add_argument("--clients", type=int, default=8, help="concurrent order clients")
    ap.add_argument("--users", type=int, default=60, help="Locust users")
    ap.add_argument("--locust-seconds", type=int, default=10)
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    sqlite, pg = Sut("sqlite", workdir, None), Sut("postgres", workdir, PG_URL)
    try:
        sqlite.wait_ready()
        pg.wait_ready()
        for sut in (sqlite, pg):  # warm caches and connections
            orders_per_second(sut.base, 2.0, args.clients)
        windows = 4
        rates: dict[str, list[float]] = {"sqlite": [], "postgres": []}
        for i in range(windows):
            order = (sqlite, pg) if i % 2 == 0 else (pg, sqlite)
            for sut in order:
                rates[sut.name].append(orders_per_second(sut.base, args.seconds / windows, args.clients))
        s_rate = sum(rates["sqlite"]) / windows
        p_rate = sum(rates["postgres"]) / windows
        print(f"order throughput, {args.clients} clients, {args.seconds:.0f} s each (ABBA windows):")
        print(f"  SQLite      {s_rate:8.1f} orders/s   windows {[round(r) for r in rates['sqlite']]}")
        print(f"  PostgreSQL  {p_rate:8.1f} orders/s   windows {[round(r) for r in rates['postgres']]}")
        print(f"  ratio PostgreSQL / SQLite = {p_rate / s_rate:.2f}")
        pg.stop()

        host = f"http://127.0.0.1:{sqlite.base}"
        one = locust_run(host, args.users, args.locust_seconds, 1, workdir)
        two = locust_run(host, args.users, args.locust_seconds, 2, workdir)
        print(f"Locust, {args.users} users, {args.locust_seconds} s, project locustfile vs the SQLite SUT:")
        print(f"  1 process     {one[0]:8.1f} req/s   Locust CPU {one[1]:.2f} ms/request"
              f" (one core saturates near {1000 / one[1]:.0f} req/s)")
        print(f"  --processes 2 {two[0]:8.1f} req/s   Locust CPU {two[1]:.2f} ms/request")
        print(f"  ratio --processes 2 / 1 process = {two[0] / one[0]:.2f}")
        cores = os.cpu_count() or 1
        print(f"  (machine: {cores} cores shared by the SUT, Locust and anything else running)")
    finally:
        sqlite.stop()
        pg.stop()


if __name__ == "__main__":
    main()
