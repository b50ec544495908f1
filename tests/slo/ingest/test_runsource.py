"""The check over a store run read on demand (core columns in memory, the attributes and the
shown traces from the Parquet files through DuckDB) reports exactly what it reports over the
whole span table."""

from __future__ import annotations

import json

import pyarrow.compute as pc
from spangen import generate

from slo.ingest.store import SpanStore, StoreWriter
from slo.judge.baseline import build_baseline
from slo.judge.check import CORE_COLUMNS, run_check
from slo.judge.spec import parse_spec
from slo.pipeline import read_for_check

T0 = 1_767_225_600_000_000_000

SPEC = """\
version: 1
regression: {latency: 10%, latency_min: 2ms}
detectors:  # every detector, so each reads the Parquet files
  serial_fanout: {fail: true, min_calls: 3, min_call_ms: 1ms, max_gap_ms: 50ms, min_saved_ms: 1ms}
  sensitive_data: {fail: false}
  n_plus_one: {fail: true}
  n_plus_one_http: {fail: false}
  broken_trace: {fail: true}
  slow_statement: {fail: false}
slos:
  - name: order-detail
    select: {service: order-service, span: "GET /orders/<int:order_id>"}
    objectives: {latency_p95: 40ms, error_rate: 1%, db_queries: 8, repeated_queries: 3,
                 span_count: 40}
  - name: product-list
    select: {service: product-service, span: "GET /products"}
    objectives: {latency_p99: 500ms, db_queries: 5, repeated_queries: 3}
  - name: users
    select: {service: user-service, span_regex: "^GET /users"}
    objectives: {latency_max: 1s, error_rate: 1%}
  - name: gets
    select: {kind: server, attributes: {http.request.method: GET}}
    objectives: {latency_p90: 100ms}
"""


def _unlabelled(t, service):
    """Spans of `service` without a run id, as a service that copies no baggage sends them."""
    run = pc.if_else(pc.equal(t["service"], service), "", t["run_id"])
    return t.set_column(t.schema.get_field_index("run_id"), "run_id", run)


def _store(tmp_path):
    base = generate(300, seed=1, run_id="base", start_ns=T0)
    cand = generate(300, seed=2, run_id="cand", error_rate=0.05, start_ns=T0 + 10**12,
                    bugs=["n_plus_one", "serial_fanout", "broken_propagation", "missing_index"])
    w = StoreWriter(tmp_path / "store")
    w.append(_unlabelled(base, "inventory-service"))
    w.append(_unlabelled(cand, "inventory-service"))
    w.close()
    return SpanStore(tmp_path / "store")


def _same(a, b):
    a, b = dict(a), dict(b)
    a.pop("created_at", None), b.pop("created_at", None)
    a.pop("generated_at", None), b.pop("generated_at", None)
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_report_from_parquet_on_demand_equals_the_whole_table(tmp_path):
    store = _store(tmp_path)
    spec = parse_spec(SPEC, "slo.yaml")
    base_spans, base_source = read_for_check(store, "base")
    baseline = build_baseline(spec, base_spans, run_id="base", source=base_source)
    whole_base = store.read("base")
    assert _same(baseline, build_baseline(spec, whole_base, run_id="base"))
    assert baseline["traces"]  # the baseline's traces came whole from the files

    spans, source = read_for_check(store, "cand")
    assert source is not None and spans.column_names == CORE_COLUMNS
    read_whole: set[str] = set()
    traces = source.traces
    source.traces = lambda ids, *a: (read_whole.update(ids), traces(ids, *a))[1]
    lazy = run_check(spec, spans, baseline, source=source)
    whole = run_check(spec, store.read("cand"), baseline)
    # only the traces the report shows are read whole from the files
    assert read_whole == set(lazy["traces"]) - set(baseline["traces"])
    assert {f["detector"] for f in lazy["findings"]} >= {"n_plus_one", "serial_fanout"}
    assert any(s["service"] == "inventory-service" for t in lazy["traces"].values()
               for s in t["spans"])  # adopted spans are in the shown traces
    assert any(s["attributes"] for t in lazy["traces"].values() for s in t["spans"])
    # attributed from traces read as attribution reads them (held columns only), by statement
    assert any(c["statement"] for r in lazy["results"] for c in r.get("contributions") or [])
    assert _same(lazy, whole)


def test_window_and_adoption_mean_what_read_means(tmp_path):
    store = _store(tmp_path)
    spans = store.read("cand")
    lo = int(pc.min(spans["start_ns"]).as_py())
    hi = lo + (int(pc.max(spans["start_ns"]).as_py()) - lo) // 2
    window = store.read("cand", start_ns=lo + 1000, end_ns=hi)
    core, source = read_for_check(store, "cand", start_ns=lo + 1000, end_ns=hi)
    assert core.num_rows == window.num_rows
    got = source.con.sql(f"SELECT trace_id, span_id, run_id FROM ({source.sql})").fetchall()
    want = zip(*(window[c].to_pylist() for c in ("trace_id", "span_id", "run_id")),
               strict=True)
    assert sorted(got) == sorted(want)


def test_live_write_ahead_log_reads_the_whole_table(tmp_path):
    w = StoreWriter(tmp_path)
    w.append(generate(5, seed=3, run_id="live", start_ns=T0))
    spans, source = read_for_check(SpanStore(tmp_path), "live")
    assert source is None and "attributes" in spans.column_names
    w.close()


def test_cut_calls_from_parquet_equal_the_whole_table(tmp_path):
    """Calls a callee answers in most traces but not in some (its spans were cut there) are
    found from the store's files as over the whole table, and so are the sampling signals."""
    import numpy as np
    import pyarrow as pa

    from slo.judge.completeness import assess
    from slo.judge.tree import RunIndex

    t = generate(200, seed=4, run_id="cut", start_ns=T0)
    tids = sorted(set(t["trace_id"].to_pylist()))[:20]
    cut = pc.and_(pc.and_(pc.equal(t["service"], "inventory-service"),
                          pc.equal(t["kind"], "server")),
                  pc.is_in(t["trace_id"], pa.array(tids)))
    t = t.filter(pc.invert(cut))
    attrs = np.array(t["attributes"].to_pylist(), object)
    attrs[:3] = ['{"sampler.type":"probabilistic","sampler.param":0.5}'] * 3
    t = t.set_column(t.schema.get_field_index("attributes"), "attributes",
                     pa.array(attrs.tolist(), pa.string()))
    w = StoreWriter(tmp_path / "store")
    w.append(t)
    w.close()
    store = SpanStore(tmp_path / "store")
    spans, source = read_for_check(store, "cut")
    assert source is not None
    lazy = assess(RunIndex(spans, source))
    whole = assess(RunIndex(store.read("cut")))
    assert lazy.cut_calls > 0 and lazy.incomplete > 0
    assert any("sampler attributes on 3" in s for s in lazy.signals)
    assert lazy.as_dict() == whole.as_dict()
    assert (lazy.row_complete == whole.row_complete).all()


def test_duckdb_memory_limit_grows_with_the_run(tmp_path, monkeypatch):
    """Some detector operators do not spill: a run of 100M spans gets about 2.1 GiB, a small
    one 256MB, and SLO_DUCKDB_MEMORY wins over both."""
    from slo.ingest import runsource

    monkeypatch.setattr(runsource, "MEMORY_LIMIT", None)
    assert runsource.memory_limit(0) == runsource.memory_limit(1_000_000) == "256MB"
    assert runsource.memory_limit(100_000_000) == "2288MB"
    source = _store(tmp_path).source("cand")
    source.fit(100_000_000)
    got = source.con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    assert got == "2.1 GiB", got  # (DuckDB reads MB as 10**6 bytes)
    monkeypatch.setattr(runsource, "MEMORY_LIMIT", "300MB")
    assert runsource.memory_limit(100_000_000) == "300MB"
    source.close()
