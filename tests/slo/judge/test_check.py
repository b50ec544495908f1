"""Evaluating objectives over generated traces: every objective, no data, detectors, traces."""

from __future__ import annotations

import json

import numpy as np
import pytest
from spangen import BATCH, DISCOUNTS, ORDER, PRODUCTS, STOCK, USER, generate, generate_rows

from slo.ingest.spans import make_row, table_from_rows
from slo.judge.check import run_check
from slo.judge.spec import parse_spec
from slo.judge.tree import RunIndex

SPEC = f"""\
version: 1
detectors:
  sensitive_data: {{fail: false}}
slos:
  - name: order-detail
    select: {{service: order-service, span: "{ORDER}"}}
    objectives: {{latency_p95: 200ms, latency_p50: 100ms, error_rate: 1%, db_queries: 8,
                  repeated_queries: 3, span_count: 40}}
  - name: product-list
    select: {{service: product-service, span: "{PRODUCTS}"}}
    objectives: {{latency_max: 500ms, db_queries: 5, repeated_queries: 3}}
  - name: users
    select: {{service: user-service, span_regex: "^GET /users"}}
    objectives: {{error_rate: 1%, latency_p99: 200ms}}
  - name: stock
    select: {{service: inventory-service, span: "{STOCK}"}}
    objectives: {{latency_p90: 200ms, db_queries: 1}}
"""


def check(table, spec_text: str = SPEC, **kw):
    return run_check(parse_spec(spec_text, "slo.yaml"), table, **kw)


def result(report: dict, slo: str, objective: str) -> dict:
    (r,) = [r for r in report["results"] if r["slo"] == slo and r["objective"] == objective]
    return r


@pytest.fixture(scope="module")
def healthy() -> dict:
    return check(generate(600, seed=11, run_id="healthy"))


def test_healthy_run_passes_every_objective(healthy: dict) -> None:
    assert healthy["verdict"] == "pass", [r for r in healthy["results"]
                                         if r["status"] != "pass"]
    assert healthy["version"] == 1 and healthy["run_id"] == "healthy"
    assert healthy["baseline_run_id"] is None
    objectives = {(r["slo"], r["objective"]) for r in healthy["results"]}
    assert ("order-detail", "span_count") in objectives and len(objectives) == 13
    for r in healthy["results"]:
        assert r["kind"] == "objective" and r["samples"] > 0
        assert r["unit"] in ("ms", "ratio", "count")
        assert set(r) >= {"slo", "objective", "status", "observed", "budget", "baseline",
                          "unit", "samples", "explanation", "trace_id"}
    json.dumps(healthy, allow_nan=False)  # strict JSON


def test_counts_cross_services_and_are_per_request(healthy: dict) -> None:
    # order read + user + batch + discounts (+ inventory on a cache miss), across services
    r = result(healthy, "order-detail", "db_queries")
    assert r["observed"] == 5 and r["unit"] == "count"
    assert result(healthy, "order-detail", "repeated_queries")["observed"] == 1
    assert result(healthy, "stock", "db_queries")["observed"] == 1
    assert result(healthy, "order-detail", "span_count")["observed"] in (13, 14)


def test_latency_values_match_numpy(healthy: dict) -> None:
    table = generate(600, seed=11, run_id="healthy")
    ix = RunIndex(table)
    names = np.array(table["name"].to_pylist())
    d = ix.duration_ms[names == ORDER]
    r = result(healthy, "order-detail", "latency_p95")
    assert r["observed"] == pytest.approx(np.percentile(d, 95, method="higher"), abs=1e-3)
    assert r["samples"] == len(d)
    # the exemplar is the slowest request, and its trace is in the report
    trace = healthy["traces"][r["trace_id"]]
    root = [s for s in trace["spans"] if s["name"] == ORDER][0]
    assert root["duration_ms"] == pytest.approx(d.max(), abs=1e-3)


def test_every_named_trace_is_in_the_report(healthy: dict) -> None:
    named = {r["trace_id"] for r in healthy["results"] if r["trace_id"]}
    named |= {f["trace_id"] for f in healthy["findings"] if f.get("trace_id")}
    assert named and named <= set(healthy["traces"])
    t = healthy["traces"][next(iter(named))]
    assert t["role"] == "candidate" and t["spans"] and t["culprit_span_id"]
    assert any(s["critical"] for s in t["spans"])
    assert {"span_id", "parent_span_id", "service", "name", "kind", "start_ms", "duration_ms",
            "status", "status_message", "critical", "attributes"} <= set(t["spans"][0])


def test_slos_block_for_the_html_report(healthy: dict) -> None:
    block = {s["name"]: s for s in healthy["slos"]}
    od = block["order-detail"]
    assert od["samples"] == result(healthy, "order-detail", "latency_p95")["samples"]
    assert od["latency_ms"]["candidate"] == sorted(od["latency_ms"]["candidate"])
    assert od["latency_ms"]["baseline"] is None
    assert od["budgets_ms"] == {"latency_p95": 200.0, "latency_p50": 100.0}


def test_latency_objective_fails_with_the_culprit_named() -> None:
    report = check(generate(300, seed=3, bugs=["slow_downstream"]))
    r = result(report, "order-detail", "latency_p95")
    assert r["status"] == "fail" and r["observed"] > 200
    assert "over the 200 ms budget" in r["explanation"]
    assert "promotion-service" in r["explanation"]
    trace = report["traces"][r["trace_id"]]
    culprit = [s for s in trace["spans"] if s["span_id"] == trace["culprit_span_id"]][0]
    assert culprit["service"] == "promotion-service"
    assert report["verdict"] == "fail"


def test_error_rate_objective() -> None:
    report = check(generate(400, seed=4, bugs=["error_burst"]))
    r = result(report, "users", "error_rate")
    assert r["status"] == "fail" and 0.1 < r["observed"] < 0.3 and r["unit"] == "ratio"
    assert "requests failed" in r["explanation"] and "Internal Server Error" in r["explanation"]
    assert report["traces"][r["trace_id"]]


def test_n_plus_one_fails_counts_and_the_detector() -> None:
    report = check(generate(300, seed=5, bugs=["n_plus_one"]))
    db = result(report, "product-list", "db_queries")
    rep = result(report, "product-list", "repeated_queries")
    assert db["status"] == rep["status"] == "fail"
    assert db["observed"] == 21 and rep["observed"] == 20
    assert "SELECT name FROM categories WHERE id = ?" in rep["explanation"]
    n1 = [f for f in report["findings"] if f["detector"] == "n_plus_one"]
    assert n1 and n1[0]["fails"] is True and n1[0]["trace_id"] in report["traces"]


def test_detector_findings_can_be_made_not_to_fail() -> None:
    spec = SPEC.replace("sensitive_data: {fail: false}", "n_plus_one: {fail: false}")
    spec = spec.replace("db_queries: 5, repeated_queries: 3", "db_queries: 50, "
                        "repeated_queries: 30")
    report = check(generate(200, seed=5, bugs=["n_plus_one"]), spec)
    n1 = [f for f in report["findings"] if f["detector"] == "n_plus_one"]
    assert n1 and not any(f["fails"] for f in n1)
    assert report["verdict"] == "pass"


def test_broken_propagation_fails_through_the_detector() -> None:
    report = check(generate(400, seed=6, bugs=["broken_propagation"]))
    broken = [f for f in report["findings"] if f["detector"] == "broken_trace"]
    assert broken and broken[0]["fails"] and report["verdict"] == "fail"
    assert all(r["status"] == "pass" for r in report["results"])


def test_no_data_fails_and_says_what_was_seen() -> None:
    spec = SPEC + ('  - name: typo\n    select: {service: order-service, span: '
                   '"GET /order/<int:order_id>"}\n    objectives: {latency_p95: 1s}\n'
                   '  - name: nobody\n    select: {service: billing-service}\n'
                   '    objectives: {error_rate: 1%}\n')
    report = check(generate(100, seed=7), spec)
    typo = result(report, "typo", "latency_p95")
    assert typo["status"] == "no_data" and typo["samples"] == 0 and typo["observed"] is None
    assert "GET /orders/<int:order_id>" in typo["explanation"]
    nobody = result(report, "nobody", "error_rate")
    assert "no spans from service 'billing-service'" in nobody["explanation"]
    assert report["verdict"] == "fail"


def test_empty_run_is_no_data_not_pass() -> None:
    report = check(table_from_rows([]))
    assert report["verdict"] == "fail"
    assert {r["status"] for r in report["results"]} == {"no_data"}
    assert "no spans at all" in report["results"][0]["explanation"]


def _span(trace: str, span: str, parent: str, name: str, start: int, end: int, **kw):
    return make_row(trace_id=trace, span_id=span, parent_span_id=parent, name=name,
                    start_ns=start, end_ns=end, **kw)


def test_old_and_stable_attribute_names_and_caches() -> None:
    """db.statement/db.query.text and db.system/db.system.name both count; Redis does not."""
    rows = [
        _span("a" * 32, "1" * 16, "", "GET /x", 0, 10_000_000, kind="server",
              resource={"service.name": "svc"}, attributes={"http.request.method": "GET"}),
        _span("a" * 32, "2" * 16, "1" * 16, "SELECT", 1, 2, kind="client",
              resource={"service.name": "svc"},
              attributes={"db.system": "sqlite", "db.statement": "SELECT 1 FROM t WHERE a=1"}),
        _span("a" * 32, "3" * 16, "1" * 16, "SELECT", 3, 4, kind="client",
              resource={"service.name": "svc"},
              attributes={"db.system.name": "postgresql",
                          "db.query.text": "SELECT 1 FROM t WHERE a = 2"}),
        _span("a" * 32, "4" * 16, "1" * 16, "GET", 5, 6, kind="client",
              resource={"service.name": "svc"},
              attributes={"db.system": "redis", "db.statement": "GET k"}),
        _span("b" * 32, "5" * 16, "", "GET /x", 0, 10_000_000, kind="server",
              resource={"service.name": "svc"},
              attributes={"http.method": "POST", "http.status_code": 503}),
    ]
    spec = ("version: 1\nslos:\n  - name: x\n    select: {service: svc, span: GET /x, "
            "attributes: {http.request.method: GET}}\n    objectives: {db_queries: 1, "
            "repeated_queries: 1}\n  - name: all\n    select: {service: svc, root: true, "
            "kind: server}\n    objectives: {error_rate: 10%}\n")
    report = check(table_from_rows(rows), spec)
    db = result(report, "x", "db_queries")
    assert db["samples"] == 1 and db["observed"] == 2  # both names, not the Redis GET
    rep = result(report, "x", "repeated_queries")
    assert rep["observed"] == 2  # one normalized statement
    err = result(report, "all", "error_rate")  # HTTP 503 on a server span is an error
    assert err["samples"] == 2 and err["observed"] == 0.5 and err["status"] == "fail"


def test_selectors_root_kind_and_attributes() -> None:
    rows = generate_rows(60, seed=8)
    spec = ("version: 1\nslos:\n  - name: roots\n    select: {root: true}\n    objectives: "
            "{latency_max: 10s}\n  - name: inner-users\n    select: {span: '" + USER +
            "', root: false}\n    objectives: {latency_max: 10s}\n  - name: batch-get\n"
            "    select: {kind: server, attributes: {http.route: /products/batch}}\n"
            "    objectives: {latency_max: 10s}\n")
    report = check(table_from_rows(rows), spec)
    roots = sum(1 for r in rows if not r["parent_span_id"])
    assert result(report, "roots", "latency_max")["samples"] == roots
    orders = sum(1 for r in rows if r["name"] == ORDER)
    assert result(report, "inner-users", "latency_max")["samples"] == orders
    batches = sum(1 for r in rows if r["name"] == BATCH)
    assert result(report, "batch-get", "latency_max")["samples"] == batches
    assert DISCOUNTS  # the generator's names are the SUT's


def test_parent_cycles_terminate() -> None:
    """A cyclic parent chain terminates and self-parents are roots."""
    rows = [
        _span("c" * 32, "1" * 16, "2" * 16, "A", 0, 1, db_system="sqlite", db_statement="x"),
        _span("c" * 32, "2" * 16, "1" * 16, "B", 0, 1),
        _span("c" * 32, "3" * 16, "3" * 16, "C", 0, 1),
    ]
    ix = RunIndex(table_from_rows(rows))
    assert ix.parent.tolist()[2] == -1
    stats = ix.count_stats(np.array([1]))
    assert stats.db_queries.tolist() == [1]


def test_ids_that_are_not_hex_still_link_parents() -> None:
    rows = [
        _span("trace-one", "root", "", "GET /x", 0, 10, kind="server",
              resource={"service.name": "svc"}),
        _span("trace-one", "child", "root", "SELECT", 1, 2,
              attributes={"db.system": "sqlite", "db.statement": "SELECT 1"},
              resource={"service.name": "svc"}),
        _span("trace-two", "root", "", "GET /x", 0, 10, kind="server",
              resource={"service.name": "svc"}),
    ]
    ix = RunIndex(table_from_rows(rows))
    assert ix.parent.tolist() == [-1, 0, -1]
    assert ix.count_stats(np.array([0, 2])).db_queries.tolist() == [1, 0]
