"""Benchmark: the detectors over a generated table of 1,000,000 spans (100,000 traces).

Prints the wall time of `run_detectors` beside a plain DuckDB query over the same Arrow
table (count of distinct traces: the floor for anything that looks at every span), and the
ratio between them. Half the traces are an order fan-out (parallel calls, with 1% carrying an
e-mail address), half a product list with an N+1 query loop.

    .venv/bin/python bench/detectors.py [--traces 100000]
"""

from __future__ import annotations

import argparse
import time

import duckdb
import numpy as np
import pyarrow as pa

from slo.ingest.spans import SCHEMA
from slo.judge.detectors import run_detectors

MS = 1_000_000

# (parent index, service, name, kind, start ms, duration ms, db statement, attributes)
ORDER = [
    (-1, "order-service", "GET /orders/<int:order_id>", "server", 0.0, 12.0, "", '{"http.route":"/orders/<int:order_id>","server.port":8080,"slo.run_id":"bench"}'),
    (0, "order-service", "SELECT", "client", 0.5, 0.1, "SELECT id, user_id FROM orders WHERE id = ?", '{"db.system":"sqlite","db.statement":"SELECT id, user_id FROM orders WHERE id = ?","slo.run_id":"bench"}'),
    (0, "order-service", "GET", "client", 1.0, 9.0, "", '{"url.full":"http://127.0.0.1:8081/users/7","slo.run_id":"bench"}'),
    (0, "order-service", "GET", "client", 1.1, 8.0, "", '{"url.full":"http://127.0.0.1:8082/products/batch","slo.run_id":"bench"}'),
    (0, "order-service", "GET", "client", 1.2, 7.0, "", '{"url.full":"http://127.0.0.1:8083/stock","slo.run_id":"bench"}'),
    (0, "order-service", "GET", "client", 1.3, 6.0, "", '{"url.full":"http://127.0.0.1:8084/discounts","slo.run_id":"bench"}'),
    (2, "user-service", "GET /users/<int:id>", "server", 1.5, 8.0, "", '{"http.route":"/users/<int:id>","server.port":8081,"slo.run_id":"bench"}'),
    (3, "product-service", "GET /products/batch", "server", 1.6, 7.0, "", '{"http.route":"/products/batch","server.port":8082,"slo.run_id":"bench"}'),
    (4, "inventory-service", "GET /stock", "server", 1.7, 6.0, "", '{"http.route":"/stock","server.port":8083,"slo.run_id":"bench"}'),
    (5, "promotion-service", "GET /discounts", "server", 1.8, 5.0, "", '{"http.route":"/discounts","server.port":8084,"slo.run_id":"bench"}'),
]
PRODUCTS = [
    (-1, "product-service", "GET /products", "server", 0.0, 6.0, "", '{"http.route":"/products","server.port":8082,"slo.run_id":"bench"}'),
    (0, "product-service", "SELECT", "client", 0.2, 0.2, "SELECT id, name FROM products LIMIT ?", '{"db.system":"sqlite","db.statement":"SELECT id, name FROM products LIMIT ?","slo.run_id":"bench"}'),
] + [
    (0, "product-service", "SELECT", "client", 0.5 + i * 0.3, 0.2, "SELECT name FROM categories WHERE id = ?", '{"db.system":"sqlite","db.statement":"SELECT name FROM categories WHERE id = ?","slo.run_id":"bench"}')
    for i in range(8)
]


def generate(traces: int, broken: bool = False) -> pa.Table:
    """`broken`: every order trace's promotion call starts a trace of its own (split traces)."""
    cols: dict[str, list] = {c: [] for c in SCHEMA.names}
    starts = 1_764_000_000 * 10**9 + np.arange(traces, dtype=np.int64) * 300_000  # 300 us apart
    for t in range(traces):
        template = ORDER if t % 2 == 0 else PRODUCTS
        tid = f"{t:032x}"
        base = int(starts[t])
        for i, (parent, service, name, kind, start, dur, stmt, attrs) in enumerate(template):
            if i == 0 and t % 200 == 0:
                attrs = attrs[:-1] + ',"enduser.email":"jane@example.com"}'
            span_tid = tid
            if broken and template is ORDER and service == "promotion-service":
                parent, span_tid = -1, f"{t + traces:032x}"
            cols["run_id"].append("bench")
            cols["trace_id"].append(span_tid)
            cols["span_id"].append(f"{t * 16 + i:016x}")
            cols["parent_span_id"].append(f"{t * 16 + parent:016x}" if parent >= 0 else "")
            cols["service"].append(service)
            cols["name"].append(name)
            cols["kind"].append(kind)
            cols["start_ns"].append(base + int(start * MS))
            cols["end_ns"].append(base + int((start + dur) * MS))
            cols["status_code"].append(0)
            cols["status_message"].append("")
            cols["db_system"].append("sqlite" if stmt else "")
            cols["db_statement"].append(stmt)
            cols["http_route"].append("")
            cols["http_status_code"].append(0)
            cols["attributes"].append(attrs)
            cols["resource"].append(f'{{"service.name":"{service}"}}')
            cols["events"].append("[]")
    return pa.Table.from_pydict(cols, schema=SCHEMA)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--broken", action="store_true", help="split every order trace in two")
    args = ap.parse_args()
    table = generate(args.traces, args.broken)
    print(f"{table.num_rows} spans, {args.traces} traces")
    con = duckdb.connect()
    con.register("spans", table)
    ref, ref_cpu = [], []
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        con.execute("SELECT count(DISTINCT trace_id) FROM spans").fetchone()
        ref.append(time.perf_counter() - t)
        ref_cpu.append(time.process_time() - c)
    det, det_cpu = [], []
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        findings = run_detectors(table)
        det.append(time.perf_counter() - t)
        det_cpu.append(time.process_time() - c)
    # CPU time (all threads) is reported too: on a shared machine it is the steadier figure.
    print(f"plain DuckDB count(DISTINCT trace_id): {min(ref) * 1000:.0f} ms wall, "
          f"{min(ref_cpu) * 1000:.0f} ms CPU")
    print(f"run_detectors:                         {min(det) * 1000:.0f} ms wall, "
          f"{min(det_cpu) * 1000:.0f} ms CPU  ({min(det) / min(ref):.1f}x wall)")
    for f in findings:
        print(f"  {f['detector']}: {f['message']}")


if __name__ == "__main__":
    main()
