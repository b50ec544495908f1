"""Detectors over small generated span tables: each with a case it must catch and one it must not."""

from __future__ import annotations

import itertools

import pytest

from slo.ingest.spans import make_row, table_from_rows
from slo.judge.detectors import DEFAULTS, find_sensitive, luhn_ok, run_detectors

MS = 1_000_000
T0 = 1_764_000_000 * 1_000_000_000
_ids = itertools.count(1)


def sid() -> str:
    return f"{next(_ids):016x}"


class Trace:
    """A tiny builder: spans with times in ms relative to the trace start."""

    def __init__(self, offset_ms: float = 0.0, trace_id: str | None = None):
        self.trace_id = trace_id or f"{next(_ids):032x}"
        self.t0 = T0 + int(offset_ms * MS)
        self.rows: list[dict] = []

    def span(self, service, name, start, dur, parent="", kind="internal", attrs=None, span_id=None, **cols):
        span_id = span_id or sid()
        self.rows.append(make_row(
            trace_id=self.trace_id, span_id=span_id, parent_span_id=parent, name=name,
            start_ns=self.t0 + int(start * MS), end_ns=self.t0 + int((start + dur) * MS),
            service=service, kind=kind, attributes=attrs or {}, **cols))
        return span_id

    def query(self, service, parent, start, dur, sql):
        return self.span(service, sql.split()[0], start, dur, parent=parent, kind="client",
                         attrs={"db.system": "sqlite", "db.statement": sql})


def table(*traces: Trace):
    return table_from_rows([r for t in traces for r in t.rows])


def only(findings, detector):
    return [f for f in findings if f["detector"] == detector]


# ------------------------------------------------------------------ N+1

def product_list(repeats: int, *, overlap: bool = False, dur: float = 0.1, offset: float = 0.0) -> Trace:
    t = Trace(offset)
    root = t.span("product-service", "GET /products", 0, 20, kind="server")
    t.query("product-service", root, 0.5, 0.2, "SELECT id, name FROM products LIMIT 20")
    for i in range(repeats):
        start = 1 + (i * 0.05 if overlap else i * (dur + 0.05))
        t.query("product-service", root, start, dur, f"select name from categories where id = {i}")
    return t


def test_n_plus_one_found_aggregated_across_traces():
    traces = [product_list(20, offset=i * 50) for i in range(4)] + [product_list(8, offset=300)]
    findings = only(run_detectors(table(*traces)), "n_plus_one")
    assert len(findings) == 1
    f = findings[0]
    assert f["service"] == "product-service" and f["span"] == "GET /products"
    assert f["statement"] == "select name from categories where id = ?"
    assert f["count"] == 20 and f["traces"] == 5 and f["fails"] is True
    assert f["trace_id"] in {t.trace_id for t in traces[:4]}
    assert "20 times" in f["message"]


def test_n_plus_one_counts_a_statement_whatever_its_keyword_case():
    """Two code paths spelling one query `select` and `SELECT` run one statement: 3 + 3 is
    an N+1 of 6, not two runs of 3 below the threshold of 5."""
    t = Trace()
    root = t.span("product-service", "GET /products", 0, 20, kind="server")
    for i in range(6):
        sql = "{} name {} categories {} id = " + str(i)
        t.query("product-service", root, 1 + i * 0.15, 0.1,
                sql.format(*(("select", "from", "where") if i % 2 else ("SELECT", "FROM", "WHERE"))))
    [f] = only(run_detectors(table(t)), "n_plus_one")
    assert f["count"] == 6
    assert f["statement"] == "SELECT name FROM categories WHERE id = ?"  # as written, one of the two


def test_four_repeats_are_not_n_plus_one():
    assert only(run_detectors(table(product_list(4))), "n_plus_one") == []


def test_overlapping_queries_are_not_n_plus_one():
    assert only(run_detectors(table(product_list(10, overlap=True))), "n_plus_one") == []


def test_n_plus_one_total_time_floor():
    tiny = product_list(6, dur=0.01)
    assert only(run_detectors(table(tiny)), "n_plus_one") == []
    found = run_detectors(table(tiny), {"n_plus_one": {"min_total_ms": 0.0, "fail": False}})
    assert only(found, "n_plus_one")[0]["fails"] is False


def test_repeats_under_different_parents_are_not_n_plus_one():
    t = Trace()
    root = t.span("product-service", "GET /products", 0, 20, kind="server")
    for i in range(6):
        parent = t.span("product-service", "load", 1 + i * 2, 1.5, parent=root)
        t.query("product-service", parent, 1.1 + i * 2, 0.3, f"SELECT * FROM c WHERE id = {i}")
    assert only(run_detectors(table(t)), "n_plus_one") == []


# ------------------------------------------------------------------ serial fan-out

def order(serial: bool, offset: float = 0.0, call_ms: float = 4.0) -> Trace:
    t = Trace(offset)
    root = t.span("order-service", "GET /orders/<int:order_id>", 0, 40, kind="server")
    for i, svc in enumerate(["user-service", "product-service", "inventory-service", "promotion-service"]):
        start = 1 + (i * (call_ms + 0.2) if serial else i * 0.1)
        c = t.span("order-service", "GET", start, call_ms, parent=root, kind="client")
        t.span(svc, f"GET /{svc}", start + 0.2, call_ms - 0.4, parent=c, kind="server")
    return t


def test_serial_fanout_found_with_saved_time():
    findings = only(run_detectors(table(*(order(True, i * 100) for i in range(3)))), "serial_fanout")
    assert len(findings) == 1
    f = findings[0]
    assert f["service"] == "order-service" and f["span"] == "GET /orders/<int:order_id>"
    assert f["count"] == 4 and f["traces"] == 3
    assert f["callees"] == ["user-service", "product-service", "inventory-service", "promotion-service"]
    assert f["saved_ms"] == pytest.approx(12.0, abs=0.01)  # 4 x 4 ms serial vs 4 ms parallel
    assert f["fails"] is True


def test_a_few_serialized_traces_among_parallel_ones_are_noise_not_a_finding():
    # a busy machine serializes a thread pool now and then; the bug does it in most requests
    noisy = [order(i in (10, 50, 90), i * 100) for i in range(100)]
    assert only(run_detectors(table(*noisy)), "serial_fanout") == []
    buggy = [order(i % 3 == 0, i * 100) for i in range(100)]
    assert only(run_detectors(table(*buggy)), "serial_fanout")[0]["traces"] == 34


def test_parallel_calls_are_not_serial_fanout():
    assert only(run_detectors(table(order(False))), "serial_fanout") == []


def test_short_calls_do_not_make_a_serial_fanout():
    assert only(run_detectors(table(order(True, call_ms=0.9))), "serial_fanout") == []


def test_calls_far_apart_are_not_serial_fanout():
    t = Trace()
    root = t.span("order-service", "GET /x", 0, 200, kind="server")
    for i, svc in enumerate(["a", "b", "c"]):
        c = t.span("order-service", "GET", 1 + i * 50, 4, parent=root, kind="client")
        t.span(svc, "GET /", 1.2 + i * 50, 3, parent=c, kind="server")
    assert only(run_detectors(table(t)), "serial_fanout") == []


# ------------------------------------------------------------------ broken traces

def test_orphan_spans_are_a_broken_trace():
    traces = []
    for i in range(5):
        t = Trace(i * 10)  # the order-service root arrived, the user-service call's parent did not
        root = t.span("order-service", "GET /orders/<int:order_id>", 0, 10, kind="server")
        t.span("order-service", "SELECT", 0.5, 0.2, parent=root, kind="client")
        t.span("user-service", "GET /users/<int:id>", 1, 3, parent=sid(), kind="server")
        traces.append(t)
    findings = only(run_detectors(table(*traces)), "broken_trace")
    assert [(f["reason"], f["service"], f["count"]) for f in findings] == [
        ("missing_parent", "user-service", 5)]
    assert findings[0]["trace_id"] in {t.trace_id for t in traces}


def test_requests_from_an_untraced_caller_are_not_broken_unless_asked():
    # Every trace's entry span names the load generator's span, which was never exported.
    traces = [order(False, i * 50) for i in range(5)]
    rows = []
    for t in traces:
        for r in t.rows:
            rows.append(dict(r, parent_span_id=r["parent_span_id"] or "00000000000000aa"))
    assert only(run_detectors(table_from_rows(rows)), "broken_trace") == []
    found = only(run_detectors(table_from_rows(rows), {"broken_trace": {"entry_orphans": True}}),
                 "broken_trace")
    assert [(f["service"], f["count"]) for f in found] == [("order-service", 5)]


def test_complete_traces_are_not_broken():
    assert only(run_detectors(table(*(order(False, i * 50) for i in range(5)))), "broken_trace") == []


def test_a_few_orphans_at_the_run_edge_are_tolerated():
    traces = [order(False, i * 100) for i in range(100)]  # 10 s of traffic
    late = Trace(100 * 100 - 50)  # still in flight when the run ended: its caller not exported
    late.span("order-service", "SELECT", 0, 0.2, parent=sid(), kind="client")
    late.span("user-service", "GET /users/<int:id>", 1, 3, parent=sid(), kind="server")
    assert only(run_detectors(table(*traces, late)), "broken_trace") == []
    # The same orphans in the middle of the run are reported (min_traces lowered to 1).
    mid = Trace(5000)
    mid.span("order-service", "SELECT", 0, 0.2, parent=sid(), kind="client")
    mid.span("user-service", "GET /users/<int:id>", 1, 3, parent=sid(), kind="server")
    found = only(run_detectors(table(*traces, mid), {"broken_trace": {"min_traces": 1}}), "broken_trace")
    assert sorted((f["service"], f["count"]) for f in found) == [("order-service", 1), ("user-service", 1)]


def split_order(offset: float) -> tuple[Trace, Trace]:
    """order-service calls promotion-service without traceparent: two traces."""
    t = Trace(offset)
    root = t.span("order-service", "GET /orders/<int:order_id>", 0, 20, kind="server")
    c = t.span("order-service", "GET", 2, 10, parent=root, kind="client",
               attrs={"url.full": "http://127.0.0.1:8084/discounts?x=1"})
    t2 = Trace(offset)
    t2.span("promotion-service", "GET /discounts", 2.5, 9, kind="server",
            attrs={"server.port": 8084})
    return t, t2, c


def test_split_traces_are_found_with_their_caller():
    pairs = [split_order(i * 100) for i in range(4)]
    findings = only(run_detectors(table(*(t for p in pairs for t in p[:2]))), "broken_trace")
    assert len(findings) == 1
    f = findings[0]
    assert f["reason"] == "split_trace" and f["service"] == "promotion-service"
    assert f["caller_service"] == "order-service" and f["count"] == 4
    assert f["trace_id"] in {p[0].trace_id for p in pairs}
    assert f["span_id"] in {p[2] for p in pairs}


def test_root_server_span_without_a_dangling_caller_is_not_split():
    traces = []
    for i in range(4):
        t = Trace(i * 100)  # a direct call to promotion-service: a legitimate root
        t.span("promotion-service", "GET /discounts", 2.5, 9, kind="server", attrs={"server.port": 8084})
        traces.append(t)
        traces.append(order(False, i * 100))  # concurrent, healthy order traces
    assert only(run_detectors(table(*traces)), "broken_trace") == []


def test_split_needs_matching_port():
    pairs = [split_order(i * 100) for i in range(4)]
    rows = []
    for a, b, _ in pairs:
        rows += a.rows
        for r in b.rows:
            r = dict(r, attributes='{"server.port":9999}')
            rows.append(r)
    assert only(run_detectors(table_from_rows(rows)), "broken_trace") == []


# ------------------------------------------------------------------ slow statements

def stock(scan_ms: float, offset: float) -> Trace:
    t = Trace(offset)
    root = t.span("order-service", "GET /orders/<int:order_id>", 0, scan_ms + 5, kind="server")
    s = t.span("inventory-service", "GET /stock", 1, scan_ms + 2, parent=root, kind="server")
    t.query("inventory-service", s, 2, scan_ms, "SELECT qty FROM inventory WHERE product_id IN (1, 2)")
    return t


def test_slow_statement_found():
    findings = only(run_detectors(table(*(stock(40, i * 100) for i in range(3)))), "slow_statement")
    assert len(findings) == 1
    f = findings[0]
    assert f["statement"] == "SELECT qty FROM inventory WHERE product_id IN (?)"
    assert f["span"] == "GET /orders/<int:order_id>" and f["count"] == 3
    assert f["share"] == pytest.approx(40 / 45, abs=0.01) and f["fails"] is False


def test_fast_statement_is_not_slow():
    assert only(run_detectors(table(*(stock(0.3, i * 100) for i in range(3)))), "slow_statement") == []


# ------------------------------------------------------------------ sensitive data

def test_luhn():
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")


def test_sensitive_values():
    kinds = [k for k, _ in find_sensitive("to jane.doe@example.com, Authorization: Bearer abcdef123456")]
    assert kinds == ["email", "bearer_token"]
    assert find_sensitive("card 4111 1111 1111 1111") == [("card_number", "4111 **** 1111")]
    assert find_sensitive("card 4111 1111 1111 1112") == []  # Luhn-invalid
    assert find_sensitive("order 1234567890123456") == []  # no card brand starts with 1
    assert find_sensitive("trace a4111111111111111f") == []  # inside a longer token


def test_sensitive_data_in_attributes():
    t = Trace()
    root = t.span("user-service", "GET /users/<int:id>", 0, 5, kind="server",
                  attrs={"enduser.email": "jane@example.com", "http.route": "/users/<int:id>"})
    t.span("payment", "charge", 1, 1, parent=root, attrs={"card": "4111-1111-1111-1111"})
    t.span("payment", "charge", 3, 1, parent=root, attrs={"card": "4111-1111-1111-1112"})
    findings = only(run_detectors(table(t)), "sensitive_data")
    got = {(f["service"], f["attribute"], f["kind"], f["count"]) for f in findings}
    assert got == {("user-service", "enduser.email", "email", 1),
                   ("payment", "card", "card_number", 1)}
    assert all("4111111111111111" not in f["message"] for f in findings)


def test_clean_attributes_have_no_sensitive_data():
    t = Trace()
    t.span("user-service", "GET /users/<int:id>", 0, 5, kind="server",
           attrs={"http.route": "/users/<int:id>", "user.id": 4111111111111112, "n": 5})
    assert only(run_detectors(table(t)), "sensitive_data") == []


# ------------------------------------------------------------------ N+1 calls

def history(calls: int, *, overlap: bool = False, server_child: bool = True,
            dur: float = 1.0) -> Trace:
    """order-service fetching products one by one: client spans with the callee's server
    span under each (or, uninstrumented callee, only a URL)."""
    t = Trace()
    root = t.span("order-service", "GET /users/<int:user_id>/orders", 0, 100, kind="server")
    for i in range(calls):
        start = 1 + (i * 0.1 if overlap else i * (dur + 0.2))
        c = t.span("order-service", "GET", start, dur, parent=root, kind="client",
                   attrs={"http.request.method": "GET",
                          "url.full": f"http://127.0.0.1:8082/products/{100 + i}?x=1"})
        if server_child:
            t.span("product-service", "GET /products/<int:product_id>", start + 0.1, dur - 0.2,
                   parent=c, kind="server")
    return t


def test_n_plus_one_http_named_by_the_callee_server_span():
    (f,) = only(run_detectors(table(history(6))), "n_plus_one_http")
    assert (f["statement"], f["callee"], f["count"], len(f["calls"])) == (
        "GET /products/<int:product_id>", "product-service", 6, 6)
    assert f["total_ms"] == pytest.approx(6.0, abs=0.01) and f["fails"]


def test_n_plus_one_http_route_from_the_url_when_the_callee_is_not_traced():
    (f,) = only(run_detectors(table(history(5, server_child=False))), "n_plus_one_http")
    assert f["statement"] == "GET /products/{id}" and f["callee"] == ""


@pytest.mark.parametrize("kwargs", [{"calls": 4}, {"calls": 8, "overlap": True},
                                    {"calls": 6, "dur": 0.1}])
def test_not_n_plus_one_http(kwargs):
    # four calls; eight in parallel; six that take 0.6 ms in all (under the 1 ms floor)
    assert only(run_detectors(table(history(**kwargs))), "n_plus_one_http") == []


# ------------------------------------------------------------------ config and shape

def test_defaults_shape():
    for name, opts in DEFAULTS.items():
        assert isinstance(opts["fail"], bool), name
        for key, value in opts.items():
            if key.endswith("_ms") or key.endswith("_share"):
                assert isinstance(value, float), (name, key)
    assert {n for n, o in DEFAULTS.items() if o["fail"]} == {"n_plus_one", "n_plus_one_http",
                                                            "broken_trace", "serial_fanout"}


@pytest.mark.parametrize("config", [{"nplusone": {}}, {"n_plus_one": {"min_cont": 3}}])
def test_options_not_from_the_spec_are_a_programming_error(config):
    """The spec validates options (with file:line, tests/slo/judge/test_spec.py); names it cannot
    have produced mean a caller skipped it."""
    with pytest.raises(ValueError, match="slo.judge.spec.parse_spec"):
        run_detectors(table(order(True)), config)


def test_validated_options_reach_the_detector():
    orders = table(*(order(True, i * 100) for i in range(3)))
    assert only(run_detectors(orders), "serial_fanout")
    assert only(run_detectors(orders, {"serial_fanout": {"min_calls": 5}}), "serial_fanout") == []


def test_findings_are_json_ready_and_complete():
    import json
    traces = [order(True, i * 100) for i in range(3)] + [product_list(6, offset=400)]
    findings = run_detectors(table(*traces))
    assert {f["detector"] for f in findings} == {"serial_fanout", "n_plus_one"}
    for f in findings:
        json.dumps(f)
        assert {"detector", "service", "span", "statement", "count", "trace_id", "span_id",
                "message", "fails", "saved_ms"} <= set(f)


def test_empty_table():
    assert run_detectors(table()) == []


def test_serial_fanout_names_a_callee_without_child_span_by_its_port():
    traces = []
    for i in range(3):
        t = Trace(i * 100)
        root = t.span("order-service", "GET /orders/<int:order_id>", 0, 40, kind="server")
        for k, svc in enumerate(["user-service", "product-service", None]):
            port = 8081 + k
            c = t.span("order-service", "GET", 1 + k * 4.2, 4, parent=root, kind="client",
                       attrs={"url.full": f"http://127.0.0.1:{port}/x"})
            if svc:
                t.span(svc, "GET /x", 1.2 + k * 4.2, 3.6, parent=c, kind="server")
        split = Trace(i * 100)  # the third call started its own trace
        split.span("promotion-service", "GET /discounts", 9.8, 3, kind="server",
                   attrs={"server.port": 8083, "http.route": "/discounts"})
        traces += [t, split]
    f = only(run_detectors(table(*traces)), "serial_fanout")[0]
    assert f["callees"] == ["user-service", "product-service", "promotion-service"]


def test_nulls_in_optional_columns_do_not_break_detection():
    import pyarrow as pa

    from slo.ingest.spans import SCHEMA

    traces = [product_list(6, offset=i * 50) for i in range(2)]
    t = table(*traces)
    cols = {c: t.column(c).to_pylist() for c in SCHEMA.names}
    for c in ("parent_span_id", "db_system", "attributes", "kind"):
        cols[c] = [None if v in ("", "{}", "internal") else v for v in cols[c]]
    findings = run_detectors(pa.Table.from_pydict(cols, schema=SCHEMA))
    assert [f["detector"] for f in findings] == ["n_plus_one"]


def test_findings_do_not_depend_on_row_order():
    import random

    pairs = [split_order(i * 100) for i in range(4)]
    traces = ([product_list(12, offset=i * 50) for i in range(3)]
              + [order(True, 1000 + i * 100) for i in range(3)]
              + [t for p in pairs for t in p[:2]])
    rows = [r for t in traces for r in t.rows]
    expected = run_detectors(table_from_rows(rows))
    assert {f["detector"] for f in expected} == {"n_plus_one", "serial_fanout", "broken_trace"}
    for seed in range(3):
        random.Random(seed).shuffle(rows)
        assert run_detectors(table_from_rows(rows)) == expected


def test_slow_statement_is_measured_against_the_entry_server_span():
    traces = []
    for i in range(3):
        t = Trace(i * 200)  # the load generator's client span is the root, with 60 ms of wire time
        root = t.span("locust", "GET /orders/[id]", 0, 100, kind="client")
        srv = t.span("order-service", "GET /orders/<int:order_id>", 30, 40, parent=root, kind="server")
        t.query("order-service", srv, 31, 35, "SELECT * FROM orders WHERE id = 1")
        traces.append(t)
    f = only(run_detectors(table(*traces)), "slow_statement")[0]
    assert f["span"] == "GET /orders/<int:order_id>" and f["request_service"] == "order-service"
    assert f["share"] == pytest.approx(35 / 40, abs=0.01)


def test_sensitive_data_counts_spans_and_says_when_counts_are_capped():
    traces = []
    for i in range(3):
        t = Trace(i * 10)
        t.span("mailer", "send", 0, 1, kind="server",
               attrs={"to": "a@example.com, b@example.org", "auth": "Bearer abcdefgh12345678"})
        traces.append(t)
    found = {f["kind"]: f for f in only(run_detectors(table(*traces)), "sensitive_data")}
    assert found["email"]["count"] == 3 and found["bearer_token"]["count"] == 3
    assert "on 3 span(s)" in found["email"]["message"]
    capped = only(run_detectors(table(*traces), {"sensitive_data": {"max_rows": 2}}), "sensitive_data")
    assert all(f["count"] == 2 and "at least 2" in f["message"] for f in capped)


def test_a_table_without_the_span_columns_is_a_clear_error():
    import pyarrow as pa

    from slo.errors import SloError

    with pytest.raises(SloError, match="lacks column"):
        run_detectors(pa.table({"trace_id": ["a"], "span_id": ["b"]}))


def test_a_call_overlapping_the_previous_one_ends_the_serial_run():
    traces = []
    for n in range(3):
        t = Trace(n * 100)
        root = t.span("order-service", "GET /orders/<int:order_id>", 0, 40, kind="server")
        # a, b, c one after another; d starts while c is still running (parallel to it)
        for svc, start in [("a", 1), ("b", 5.2), ("c", 9.4), ("d", 11.0)]:
            c = t.span("order-service", "GET", start, 4, parent=root, kind="client")
            t.span(svc, "GET /", start + 0.2, 3.6, parent=c, kind="server")
        traces.append(t)
    f = only(run_detectors(table(*traces)), "serial_fanout")[0]
    assert f["callees"] == ["a", "b", "c"] and f["count"] == 3
    assert f["saved_ms"] == pytest.approx(8.0, abs=0.01)


def test_a_root_that_outlives_the_dangling_call_is_not_its_callee():
    pairs = []
    for i in range(4):
        caller, callee, _ = split_order(i * 100)
        callee.rows[0]["end_ns"] = callee.t0 + 30 * MS  # runs on long after the call returned
        pairs += [caller, callee]
    assert only(run_detectors(table(*pairs)), "broken_trace") == []


# ------------------------------------------------- ids as rows (slo.judge.spanframe)

def test_queries_under_a_parent_that_never_arrived_are_still_one_group():
    # The server span of each request was lost; its twelve queries still share a parent id,
    # so they are one N+1 (the parent is named by its id, having no name).
    traces = []
    for i in range(3):
        t = product_list(12, offset=i * 50)
        root = t.rows[0]["span_id"]
        t.rows = t.rows[1:]
        traces.append((t, root))
    [f] = only(run_detectors(table(*(t for t, _ in traces))), "n_plus_one")
    assert (f["count"], f["traces"]) == (12, 3)
    assert f["span_id"] in {root for _, root in traces}
    assert f["span"] == ""


def test_siblings_under_different_missing_parents_are_not_grouped():
    # Six queries under one lost parent and six under another are two runs of six, not one of
    # twelve: the missing parents are told apart by their ids, within the trace.
    t = Trace()
    for j, p in enumerate((sid(), sid())):  # one after the other: twelve in a row if merged
        for i in range(6):
            t.query("product-service", p, 1 + j * 2 + i * 0.2, 0.1,
                    f"select name from categories where id = {i}")
    [f] = only(run_detectors(table(t), {"n_plus_one": {"min_total_ms": 0.0}}), "n_plus_one")
    assert f["count"] == 6


def test_a_span_naming_itself_as_parent_is_not_an_orphan():
    traces = []
    for i in range(5):
        t = Trace(i * 10)
        own = sid()
        root = t.span("order-service", "GET /orders/<int:order_id>", 0, 10, kind="server",
                      span_id=own, parent=own)
        t.span("order-service", "SELECT", 0.5, 0.2, parent=root, kind="client")
        traces.append(t)
    # (entry_orphans: even a trace's only top span would count, were it an orphan)
    assert only(run_detectors(table(*traces), {"broken_trace": {"min_traces": 1,
                                                                "entry_orphans": True}}),
                "broken_trace") == []
