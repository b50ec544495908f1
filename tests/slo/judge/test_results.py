"""The typed results write the report's JSON fields, and only those.

The check's working state (exemplar row, attribution flag, baseline summary, explain flag)
lives on the results as typed fields; a report that carried it would leak a baseline's
whole summary into slo-report.json, and a reader would take it for a field.
"""

from __future__ import annotations

import json
import math

from spangen import ORDER, generate

from slo.judge.baseline import build_baseline
from slo.judge.check import run_check
from slo.judge.results import Finding, Result, TraceView, num
from slo.judge.spec import parse_spec

#: The result fields of slo-report.json (DESIGN.md and the later ones); optional ones last.
FIELDS = ["slo", "objective", "kind", "status", "observed", "budget", "baseline", "unit",
          "samples", "explanation", "trace_id", "baseline_trace_id", "p_value", "significant",
          "contributions", "change", "ci_low", "ci_high", "confidence", "method", "spec_line"]
OPTIONAL = {"stat", "pattern", "affected_share", "span_id", "comparisons"}


def test_working_state_is_not_written() -> None:
    r = Result("s", "latency_regression", "regression", "fail", 12.3456789, 0.1, "ms", 40,
               "slower", 7, exemplar_row=3, attribute=True, base={"latency_ms": [1.0]},
               explain_worst=True, stat="p90")
    d = r.as_dict()
    assert list(d) == [*FIELDS, "stat"]
    assert d["observed"] == 12.345679 and d["budget"] == 0.1 and d["spec_line"] == 7
    json.dumps(d, allow_nan=False)


def test_numbers_are_json_numbers() -> None:
    assert num(math.nan) is None and num(math.inf) is None and num(None) is None
    assert Result("s", "o", "objective", "pass", math.nan, 1, "ms", 0, "", None).observed is None


def test_finding_keeps_its_evidence_and_names_its_traces() -> None:
    raw = {"detector": "broken_trace", "service": "a", "count": 2, "trace_id": "t1",
           "other_trace_id": "t2", "message": "broken", "fails": True}
    f = Finding.from_detector(raw)
    assert f.trace_ids() == {"t1", "t2"}
    assert f.as_dict() == raw


def test_trace_view_round_trips_and_takes_a_role() -> None:
    t = {"trace_id": "t", "role": "candidate", "start_ns": 1, "duration_ms": 2.0,
         "culprit_span_id": None, "spans": [], "truncated": 3}
    assert TraceView.from_dict(t).as_dict() == t
    assert TraceView.from_dict(t, role="baseline").as_dict()["role"] == "baseline"


def test_a_report_carries_only_report_fields() -> None:
    spec = parse_spec(f"""\
version: 1
regression: {{latency: 10%, latency_min: 0.1ms}}
slos:
  - name: order-detail
    select: {{service: order-service, span: "{ORDER}"}}
    objectives: {{latency_p95: 1ms, db_queries: 8}}
""", "slo.yaml")
    base = build_baseline(spec, generate(200, seed=1))
    report = run_check(spec, generate(200, seed=2, scale=3.0), base)
    for r in report["results"]:
        assert list(r)[:len(FIELDS)] == FIELDS and set(r) - set(FIELDS) <= OPTIONAL
    lat = next(r for r in report["results"] if r["objective"] == "latency_regression")
    assert lat["status"] == "fail" and lat["contributions"]  # attributed, from its base
    p95 = next(r for r in report["results"] if r["objective"] == "latency_p95")
    assert "Worst trace" in p95["explanation"]  # the explain flag did its work
