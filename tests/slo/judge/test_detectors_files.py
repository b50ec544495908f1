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
        # a table that only says how many spans there are: every column from the files
        counted = run_detectors(spans.select(["run_id"]), sql=source.sql, con=source.con)
    finally:
        source.close()
    whole = run_detectors(store.read("r1"))
    assert {f["detector"] for f in whole} >= {"n_plus_one", "slow_statement", "broken_trace"}
    slow = [f for f in whole if f["detector"] == "slow_statement"
            and f["statement"].startswith("SELECT * FROM orders")]
    assert [f["span"] for f in slow] == ["GET /c-sorts-last"]
    assert lazy == whole
    assert counted == whole


def _sensitive_over_files(tmp_path, attrs: list[dict]) -> set[tuple[str, str]]:
    """sensitive_data's findings over a stored run read as the check reads it (attributes
    from the files), each span of `attrs` in its own trace, among clean ones."""
    from test_detectors import Trace

    traces = []
    for i in range(200):
        t = Trace(i * 10)
        t.span("user-service", "GET /users/<int:id>", 0, 5, kind="server",
               attrs={"http.route": "/users/<int:id>", "user.id": 1234567890123456 + i})
        traces.append(t)
    for i, a in enumerate(attrs):
        t = Trace(5000 + i * 10)
        t.span("payment", "charge", 0, 1, attrs=a)
        traces.append(t)
    w = StoreWriter(tmp_path / "store")
    for t in traces:  # one segment holds many spans; the findings are in the last ones
        w.append(table_from_rows([dict(r, run_id="r1") for r in t.rows]))
    w.close()
    spans, source = read_for_check(SpanStore(tmp_path / "store"), "r1")
    try:
        found = run_detectors(spans, sql=source.sql, con=source.con, files=source.files)
    finally:
        source.close()
    return {(f["attribute"], f["kind"]) for f in found if f["detector"] == "sensitive_data"}


def test_sensitive_data_over_the_files_finds_rare_kinds_and_e_mails(tmp_path):
    """Tokens and card numbers are looked for a whole segment at a time first: found there,
    every span is searched; not found, only spans with an "@"."""
    assert _sensitive_over_files(tmp_path / "a", [
        {"card": "4111-1111-1111-1111"}, {"auth": "Bearer abcdef123456"},
        {"to": "jane@example.com"}]) == {
            ("card", "card_number"), ("auth", "bearer_token"), ("to", "email")}
    assert _sensitive_over_files(tmp_path / "b", [{"to": "jane@example.com"}]) == {
        ("to", "email")}
    assert _sensitive_over_files(tmp_path / "c", [{"n": "4111-1111-1111-1112"}]) == set()


def test_a_detector_out_of_duckdb_memory_says_which_setting_to_raise(tmp_path):
    import pytest
    from spangen import generate

    from slo.errors import SloError

    w = StoreWriter(tmp_path / "store")
    w.append(generate(3000, seed=3, run_id="big", bugs=["n_plus_one"]))
    w.close()
    spans, source = read_for_check(SpanStore(tmp_path / "store"), "big")
    try:
        source.con.execute("SET memory_limit = '1MB'")
        with pytest.raises(SloError, match=r"could not run over these spans: .*Out of Memory"
                           r".*DuckDB's limit is .*: set SLO_DUCKDB_MEMORY higher"):
            run_detectors(spans, sql=source.sql, con=source.con)
    finally:
        source.close()
