"""Whole traces and sampled runs: counted, said in every report, and per-request counts use
complete traces only."""

from __future__ import annotations

import json
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from spangen import ORDER, generate_rows

from slo.ingest import otlp
from slo.ingest.spans import TRACESTATE_ATTR, table_from_rows
from slo.judge.check import run_check
from slo.judge.completeness import assess, sentence
from slo.judge.spec import parse_spec
from slo.judge.tree import RunIndex
from slo.report.writers import print_report, write_reports

SPEC = parse_spec(f"""
version: 1
slos:
  - name: order-detail
    select: {{service: order-service, span: "{ORDER}"}}
    objectives: {{latency_p95: 10s, db_queries: 100}}
""")
DOWNSTREAM = {"user-service", "product-service", "inventory-service", "promotion-service"}


def _rows(n: int = 300, **kw) -> list[dict]:  # type: ignore[no-untyped-def]
    return generate_rows(n, seed=3, **kw)


def _by_trace(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["trace_id"], []).append(r)
    return out


def test_complete_run() -> None:
    c = assess(RunIndex(table_from_rows(_rows())))
    assert (c.traces, c.complete, c.missing_parents, c.detected) == (300, 300, 0, False)
    assert sentence(c.as_dict()) == "300 of 300 traces complete."


def test_entry_span_of_an_untraced_caller_is_not_missing() -> None:
    rows = _rows(20)
    for r in rows:  # every trace entered from a load tool's unexported client span
        if r["parent_span_id"] == "":
            r["parent_span_id"] = "feedfacefeedface"
    c = assess(RunIndex(table_from_rows(rows)))
    assert (c.complete, c.missing_parents) == (20, 0)


def _cut(rows: list[dict], every: int) -> tuple[list[dict], int]:
    """Drop order-service's client span of the product call in every `every`-th order trace:
    product-service's spans lose their parent (what an exporter dropping spans does), and
    the order's subtree would count its queries short."""
    out, cut = [], 0
    traces = list(_by_trace(rows).values())
    orders = [spans for spans in traces if spans[-1]["name"] == ORDER]
    for i, spans in enumerate(orders):
        ids = {s["span_id"]: s for s in spans}
        callers = {s["parent_span_id"] for s in spans if s["service"] == "product-service"
                   and s["kind"] == "server"}
        if i % every == 0 and callers & set(ids):
            cut += 1
            spans[:] = [s for s in spans if s["span_id"] not in callers]
    for spans in traces:
        if spans[-1]["name"] != ORDER:
            out += spans
    for spans in orders:
        out += spans
    return out, cut


def test_incomplete_traces_are_left_out_of_per_request_counts(tmp_path: Path) -> None:
    rows, cut = _cut(_rows(), 2)
    assert cut > 5
    report = run_check(SPEC, table_from_rows(rows))
    c = report["completeness"]
    assert (c["incomplete"], c["sampled"]) == (cut, False) and c["missing_parents"] > 0
    db = next(r for r in report["results"] if r["objective"] == "db_queries")
    orders = sum(1 for r in rows if r["name"] == ORDER)
    assert db["samples"] == orders - cut
    assert f"Counted over the {orders - cut} of {orders} requests whose traces arrived " \
           f"whole ({cut} incomplete left out)." in db["explanation"]
    # the latency objective still uses every request
    lat = next(r for r in report["results"] if r["objective"] == "latency_p95")
    assert lat["samples"] == orders
    paths = write_reports(report, tmp_path)
    md = paths["md"].read_text()
    assert f"Traces: {300 - cut} of 300 traces complete; {cut} incomplete" in md
    assert json.loads(paths["json"].read_text())["completeness"]["complete"] == 300 - cut
    assert f"traces: {300 - cut} of 300 traces complete; {cut} incomplete" in \
        paths["html"].read_text()


def _sampled_downstream(rows: list[dict]) -> list[dict]:
    """Each downstream service samples on its own (a 1-in-4 head sampler, not parent-based):
    in three traces of four their spans never arrive, so order-service's calls go unanswered."""
    out = []
    for i, (_, spans) in enumerate(_by_trace(rows).items()):
        keep_downstream = i % 4 == 0
        for s in spans:
            if s["service"] in DOWNSTREAM and not keep_downstream and \
                    spans[-1]["service"] == "order-service":
                continue
            out.append(s)
    return out


def test_sampled_run_is_said_and_broken_traces_do_not_fail(capsys) -> None:  # type: ignore[no-untyped-def]
    rows = _sampled_downstream(_rows(bugs=["broken_propagation"]))
    report = run_check(SPEC, table_from_rows(rows))
    c = report["completeness"]
    assert c["sampled"] and c["unanswered_calls"] > c["client_calls"] / 2
    assert "client calls have no server span answering them" in c["signals"][0]
    # an order whose downstream spans never came would count its queries short
    cut_orders = {r["trace_id"] for r in rows if r["name"] == ORDER} - {
        r["trace_id"] for r in rows if r["service"] in DOWNSTREAM}
    assert cut_orders and c["incomplete"] >= len(cut_orders)
    db = next(r for r in report["results"] if r["objective"] == "db_queries")
    orders = sum(1 for r in rows if r["name"] == ORDER)
    assert db["samples"] <= orders - len(cut_orders) and "incomplete left out" in \
        db["explanation"]
    broken = [f for f in report["findings"] if f["detector"] == "broken_trace"]
    assert broken and not any(f["fails"] for f in broken)
    assert all("the run is sampled" in f["message"] for f in broken)
    print_report(report)
    out = capsys.readouterr().out
    assert "traces: " in out and "Sampled run: " in out


def test_tracestate_sampling_keys_are_a_signal() -> None:
    rows = _rows(30)
    for r in rows:
        attrs = json.loads(r["attributes"])
        attrs[TRACESTATE_ATTR] = "vendor=x,ot=th:c;rv:0123456789abcd"
        r["attributes"] = json.dumps(attrs)
    c = assess(RunIndex(table_from_rows(rows)))
    assert c.detected and c.complete == 30
    assert "OpenTelemetry sampling keys in tracestate" in c.signals[0]
    rows = _rows(30)
    for r in rows:
        attrs = json.loads(r["attributes"])
        attrs[TRACESTATE_ATTR] = "vendor=x"  # a tracestate that says nothing of sampling
        r["attributes"] = json.dumps(attrs)
    assert not assess(RunIndex(table_from_rows(rows))).detected


def test_otlp_keeps_the_tracestate() -> None:
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "GET /x"
    span.trace_state = "ot=th:8"
    table = otlp.decode(req.SerializeToString(), "application/x-protobuf").table
    assert json.loads(table.column("attributes")[0].as_py())[TRACESTATE_ATTR] == "ot=th:8"
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "01" * 16, "spanId": "02" * 8, "name": "GET /x", "traceState": "ot=p:3"}]}]}]}
    table = otlp.decode(json.dumps(body).encode(), "application/json").table
    assert json.loads(table.column("attributes")[0].as_py())[TRACESTATE_ATTR] == "ot=p:3"


def test_calls_to_an_untraced_service_do_not_make_traces_incomplete() -> None:
    # promotion-service exports nothing at all: its calls are never answered anywhere
    kept = [r for r in _rows(40) if r["service"] != "promotion-service"]
    c = assess(RunIndex(table_from_rows(kept)))
    assert c.unanswered_clients > 0 and c.cut_calls == 0 and c.complete == c.traces
