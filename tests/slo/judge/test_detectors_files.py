"""Detectors over a stored run (core columns from the check's Arrow table, attributes from the
Parquet files, names held as ENUMs in DuckDB) find exactly what they find over the whole table,
ties included."""

from __future__ import annotations

from test_detectors import Trace, product_list, split_order, stock

from slo.ingest.spans import table_from_rows
from slo.ingest.store import SpanStore, StoreWriter
from slo.judge.detectors import run_detectors
from slo.pipeline import read_for_check


def _tied_entries(offset: float) -> Trace:
    """Two server spans of one trace, equally long: the request is the one whose name sorts
    last (`arg_max(name, (duration, name))`), whatever order the names were first seen in."""
    t = Trace(offset)
    first = t.span("order-service", "GET /b-first-seen", 0, 50, kind="server")
    t.query("order-service", first, 1, 40, "SELECT * FROM orders WHERE id = 1")
    t.span("order-service", "GET /a-sorts-first", 0, 50, kind="server")
    t.span("order-service", "GET /c-sorts-last", 0, 50, kind="server")
    return t


def test_findings_from_the_files_equal_those_over_the_whole_table(tmp_path):
    pairs = [split_order(2000 + i * 100) for i in range(4)]
    traces = ([_tied_entries(i * 100) for i in range(3)]
              + [product_list(12, offset=500 + i * 50) for i in range(3)]
              + [stock(40, 800 + i * 100) for i in range(3)]
              + [t for p in pairs for t in p[:2]])
    rows = [dict(r, run_id="r1") for t in traces for r in t.rows]
    w = StoreWriter(tmp_path / "store")
    w.append(table_from_rows(rows))
    w.close()
    store = SpanStore(tmp_path / "store")
    spans, source = read_for_check(store, "r1")
    assert source is not None and "attributes" not in spans.column_names
    try:
        lazy = run_detectors(spans, sql=source.sql, con=source.con)
    finally:
        source.close()
    whole = run_detectors(store.read("r1"))
    assert {f["detector"] for f in whole} >= {"n_plus_one", "slow_statement", "broken_trace"}
    slow = [f for f in whole if f["detector"] == "slow_statement"
            and f["statement"].startswith("SELECT * FROM orders")]
    assert [f["span"] for f in slow] == ["GET /c-sorts-last"]
    assert lazy == whole
