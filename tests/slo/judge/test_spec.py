"""The spec: what loads, and every kind of mistake reported with file, line and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from slo.errors import SpecError
from slo.judge.spec import load_spec, parse_duration_ms, parse_percent, parse_spec

ROOT = Path(__file__).resolve().parents[3]

GOOD = """\
version: 1
regression:
  latency: 30%
  latency_min: 2ms
detectors:
  n_plus_one: {fail: true, min_count: 6}
  slow_statement: {fail: false, min_share: 40%, min_ms: 15ms}
slos:
  - name: order-detail
    select:
      service: order-service
      span: "GET /orders/<int:order_id>"
      root: true
      kind: server
      attributes: {http.request.method: GET}
    objectives:
      latency_p95: 400ms
      latency_p50: 1.5s
      latency_max: 250us
      error_rate: 1%
      db_queries: 8
      repeated_queries: 3
      span_count: 40
    regression:
      latency: 20%
      db_queries: 0
  - name: products
    select: {service: product-service, span_regex: "^GET /products"}
    objectives: {latency_p99: 2s}
    regression: {latency: off, error_rate: 5%}
"""


def test_good_spec_loads_with_units_and_defaults() -> None:
    spec = parse_spec(GOOD, "slo.yaml")
    od, prod = spec.slos
    assert od.name == "order-detail" and od.select.root is True and od.select.kind == "server"
    assert dict(od.select.attributes) == {"http.request.method": "GET"}
    budgets = {o.name: o.budget for o in od.objectives}
    assert budgets == {"latency_p95": 400.0, "latency_p50": 1500.0, "latency_max": 0.25,
                       "error_rate": 0.01, "db_queries": 8.0, "repeated_queries": 3.0,
                       "span_count": 40.0}
    # SLO-level regression overrides the top-level defaults key by key.
    assert od.regression.latency == pytest.approx(0.2)
    assert od.regression.latency_min_ms == 2.0
    assert od.regression.db_queries == 0.0
    assert prod.regression.latency is None and prod.regression.error_rate == pytest.approx(0.05)
    assert prod.regression.latency_min_ms == 2.0
    assert prod.select.span_regex == "^GET /products"
    assert spec.detectors == {"n_plus_one": {"fail": True, "min_count": 6},
                              "slow_statement": {"fail": False, "min_share": 0.4,
                                                 "min_ms": 15.0}}


def test_project_slo_yaml_loads() -> None:
    spec = load_spec(ROOT / "slo.yaml")
    names = {s.name for s in spec.slos}
    assert {"order-detail", "product-list", "stock", "discounts", "user-profile"} <= names
    assert spec.slo("order-detail").select.span == "GET /orders/<int:order_id>"
    assert spec.detectors["broken_trace"]["fail"] is True


def test_units() -> None:
    assert parse_duration_ms("400ms") == 400.0
    assert parse_duration_ms("2s") == 2000.0
    assert parse_duration_ms("250us") == 0.25
    assert parse_duration_ms("400") is None and parse_duration_ms("4 minutes") is None
    assert parse_percent("1%") == 0.01 and parse_percent("0.5 %") == 0.005
    assert parse_percent("0.01") is None and parse_percent(0) == 0.0


def _error(text: str) -> str:
    with pytest.raises(SpecError) as e:
        parse_spec(text, "slo.yaml")
    return str(e.value)


def _one(objectives: str = "latency_p95: 400ms", select: str =
         "{service: a, span: b}", extra: str = "") -> str:
    return (f"version: 1\n{extra}slos:\n  - name: x\n    select: {select}\n"
            f"    objectives: {{{objectives}}}\n")


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (_one("latency_p59: 400ms"), 5, "unknown key 'latency_p59' in objectives of slo 'x' "
         "(did you mean 'latency_p99'?)"),
        (_one(select="{servce: a, span: b}"), 4, "did you mean 'service'?"),
        (_one("latency_p95: 400"), 5, "objective latency_p95: expected a duration like 400ms"),
        (_one("latency_p95: fast"), 5, "expected a duration"),
        (_one("error_rate: 2"), 5, "objective error_rate: expected a percentage like 1%"),
        (_one("error_rate: 150%"), 5, "expected a percentage"),
        (_one("db_queries: -1"), 5, "expected a non-negative integer count"),
        (_one("db_queries: many"), 5, "expected a non-negative integer count"),
        (_one(select="{}"), 4, "empty selector"),
        (_one(select="{service: a, span: b, span_regex: c}"), 4, "either span or span_regex"),
        (_one(select="{service: a, span_regex: '(['}"), 4, "not a valid regular expression"),
        (_one(select="{service: a, kind: sever}"), 4, "select kind: expected one of"),
        (_one(select="{service: a, root: maybe}"), 4, "select root: expected true or false"),
        (_one(select="{service: ''}"), 4, "expected a non-empty string"),
        (_one(objectives=""), 5, "no objectives"),
        (_one(extra="regression: {latency: 20}\n"), 2, "regression latency: expected a "
         "percentage like 20%"),
        (_one(extra="regression: {latncy: 20%}\n"), 2, "did you mean 'latency'?"),
        (_one(extra="regression: {latency_min: 5}\n"), 2, "expected a duration like 1ms"),
        (_one(extra="regression: {alpha: 5}\n"), 2, "between 0 and 1"),
        (_one(extra="detectors: {n_plus_on: {fail: true}}\n"), 2, "did you mean 'n_plus_one'?"),
        (_one(extra="detectors:\n  n_plus_one: {fial: true}\n"), 3, "did you mean 'fail'?"),
        (_one(extra="detectors:\n  n_plus_one: {min_count: lots}\n"), 3,
         "detector n_plus_one min_count: expected a whole number >= 0, got 'lots'"),
        (_one(extra="detectors:\n  broken_trace:\n    fail: true\n    min_traces: -1\n"), 5,
         "detector broken_trace min_traces: expected a whole number >= 0, got -1"),
        (_one(extra="detectors:\n  serial_fanout: {min_calls: -1}\n"), 3,
         "detector serial_fanout min_calls: expected a whole number >= 0, got -1"),
        (_one(extra="detectors:\n  n_plus_one: {fail: 'yes'}\n"), 3,
         "detector n_plus_one fail: expected true or false"),
        (_one(extra="detectors:\n  n_plus_one: {min_total_ms: -5ms}\n"), 3,
         "detector n_plus_one min_total_ms: expected a duration like 20ms"),
        (_one(extra="detectors:\n  slow_statement: {min_share: 2}\n"), 3,
         "expected a percentage like 50%"),
        (_one(extra="colour: red\n"), 2, "unknown key 'colour' in the spec"),
        ("version: 2\nslos: []\n", 1, "unsupported spec version 2; expected 1"),
        ("slos:\n  - name: x\n", 1, "missing 'version: 1'"),
        ("version: 1\n", 1, "missing 'slos:'"),
        ("version: 1\nslos: {}\n", 2, "expected a non-empty list"),
        ("version: 1\nslos:\n  - select: {service: a}\n    objectives: {db_queries: 1}\n", 3,
         "expected a non-empty 'name'"),
        ("version: 1\nslos:\n  - name: x\n    objectives: {db_queries: 1}\n", 3,
         "missing 'select'"),
        ("version: 1\nslos:\n  - name: x\n    select: {service: a}\n", 3,
         "missing 'objectives'"),
        ("version: 1\nslos:\n  - name: x\n    select: [a]\n    objectives: {db_queries: 1}\n",
         4, "select must be a mapping, got a list"),
        ("version: 1\nslos:\n  - name: x\n    select: {service: a}\n    objectives: "
         "{db_queries: 1}\n    objectives: {db_queries: 2}\n", 6, "duplicate key 'objectives' "
         "(first on line 5)"),
        ("version: 1\nslos:\n  - name: [oops\n", 4, "not valid YAML"),
        ("", 1, "the spec is empty"),
        ("- just\n- a list\n", 1, "the spec must be a mapping"),
    ],
)
def test_each_mistake_names_file_line_and_expectation(text: str, line: int,
                                                       needle: str) -> None:
    message = _error(text)
    assert f"slo.yaml:{line}: " in message, message
    assert needle in message, message


def test_duplicate_slo_names_point_at_both() -> None:
    text = ("version: 1\nslos:\n  - name: a\n    select: {service: s}\n    objectives: "
            "{db_queries: 1}\n  - name: a\n    select: {service: t}\n    objectives: "
            "{db_queries: 1}\n")
    assert "slo.yaml:6: duplicate slo name 'a' (first on line 3)" in _error(text)


def test_every_mistake_is_reported_not_just_the_first() -> None:
    text = _one("latency_p95: soon, error_rate: 3, db_queris: 2", "{servce: a}")
    lines = _error(text).splitlines()
    assert len(lines) >= 4
    assert all(line.startswith("slo.yaml:") for line in lines)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(SpecError, match="cannot read the spec"):
        load_spec(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text(_one())
    assert load_spec(ok).path == str(ok)


GATE_SPEC = """\
version: 1
gate:
  locustfile: load/locustfile.py
  baseline_cmd: ./run-main.sh {port}
  candidate_cmd: ./run-pr.sh {port}
  health: /healthz
  users: 6
  duration: 10s
  slice: 500ms
slos:
  - name: a
    select: {service: s, span: x}
    objectives: {latency_p95: 100ms}
"""


def test_gate_settings_live_in_the_spec(tmp_path) -> None:
    path = tmp_path / "repo" / "slo.yaml"
    path.parent.mkdir()
    path.write_text(GATE_SPEC)
    gate = load_spec(path).gate
    assert gate["locustfile"] == str(path.parent / "load" / "locustfile.py")
    assert gate["baseline_cmd"] == "./run-main.sh {port}"
    assert (gate["health"], gate["users"], gate["duration"], gate["slice"]) == ("/healthz", 6, 10.0, 0.5)
    assert parse_spec("version: 1\n" + GATE_SPEC.split("  slice: 500ms\n")[1]).gate == {}


def test_gate_settings_mistakes_name_file_and_line() -> None:
    bad = (GATE_SPEC.replace("users: 6", "users: many").replace("health: /healthz", "health: healthz")
           .replace("slice: 500ms", "slices: 1s"))
    with pytest.raises(SpecError) as e:
        parse_spec(bad, "slo.yaml")
    msg = str(e.value)
    assert "slo.yaml:6: gate health: expected a path starting with '/'" in msg
    assert "slo.yaml:7: gate users: expected a whole number >= 1, got 'many'" in msg
    assert "slo.yaml:9: unknown key 'slices' in gate (did you mean 'slice'?)" in msg
    with pytest.raises(SpecError, match=r"slo.yaml:2: gate must be a mapping"):
        parse_spec("version: 1\ngate: [1]\n" + GATE_SPEC.split("  slice: 500ms\n")[1], "slo.yaml")
