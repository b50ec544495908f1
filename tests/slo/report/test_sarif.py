"""slo-report.sarif: a real check's report as SARIF 2.1.0, validated against the OASIS schema
(tests/fixtures/sarif-schema-2.1.0.json), with locations from span code attributes or the
spec's lines."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from slo.ingest.spans import make_row, table_from_rows
from slo.judge.check import run_check
from slo.judge.spec import load_spec
from slo.report.sarif import to_sarif
from slo.report.writers import write_reports

SCHEMA = json.loads((Path(__file__).parents[2] / "fixtures" / "sarif-schema-2.1.0.json")
                    .read_text())

SPEC = """version: 1
slos:
  - name: things
    select: {service: catalog, span: "GET /things"}
    objectives:
      latency_p95: 10s
      db_queries: 3
  - name: missing
    select: {service: catalog, span: "GET /missing"}
    objectives:
      error_rate: 1%
"""


def _traces(code_file: str, n: int = 3, code: bool = True) -> list[dict]:
    rows = []
    for t in range(n):
        tid, t0 = f"{t + 1:032x}", 1_700_000_000_000_000_000 + t * 100_000_000
        res = {"service.name": "catalog"}
        rows.append(make_row(trace_id=tid, span_id=f"{1:016x}", name="GET /things",
                             start_ns=t0, end_ns=t0 + 20_000_000, resource=res, kind="server",
                             attributes={"http.route": "/things"}))
        attrs = {"code.file.path": code_file, "code.line.number": 42,
                 "code.function.name": "things.load"} if code else {}
        rows.append(make_row(trace_id=tid, span_id=f"{2:016x}", parent_span_id=f"{1:016x}",
                             name="load things", start_ns=t0 + 1_000_000,
                             end_ns=t0 + 19_000_000, resource=res, attributes=attrs))
        for i in range(6):
            s = t0 + 2_000_000 + i * 2_000_000
            rows.append(make_row(trace_id=tid, span_id=f"{10 + i:016x}",
                                 parent_span_id=f"{2:016x}", name="SELECT", start_ns=s,
                                 end_ns=s + 1_500_000, resource=res, kind="client",
                                 attributes={"db.system": "sqlite", "db.statement":
                                             f"SELECT name FROM categories WHERE id = {i}"}))
    return rows


def _sarif(tmp_path: Path, code: bool) -> dict:
    spec_path = tmp_path / "slo.yaml"
    spec_path.write_text(SPEC)
    spec = load_spec("slo.yaml")  # relative, as CI runs it from the repository root
    report = run_check(spec, table_from_rows(_traces(str(tmp_path / "app" / "things.py"),
                                                     code=code)))
    paths = write_reports(report, tmp_path / "reports")
    assert paths["sarif"] == tmp_path / "reports" / "slo-report.sarif"
    log = json.loads(paths["sarif"].read_text())
    jsonschema.Draft4Validator(SCHEMA).validate(log)
    return log


def _by_rule(log: dict) -> dict[str, dict]:
    return {r["ruleId"]: r for r in log["runs"][0]["results"]}


def test_locations_from_span_code_attributes(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    log = _sarif(tmp_path, code=True)
    results = _by_rule(log)
    # passing objectives are not alerts
    assert set(results) == {"slo/db_queries", "slo/error_rate", "detector/n_plus_one"}
    for rule in ("slo/db_queries", "detector/n_plus_one"):
        loc = results[rule]["locations"][0]
        assert loc["physicalLocation"] == {
            "artifactLocation": {"uri": "app/things.py", "uriBaseId": "%SRCROOT%"},
            "region": {"startLine": 42}}
        assert loc["logicalLocations"][0]["fullyQualifiedName"] == "things.load"
    assert results["slo/db_queries"]["level"] == "error"
    assert "SLO things db_queries failed: At most 6 DB queries" in \
        results["slo/db_queries"]["message"]["text"]
    # no data: the objective's own line in the spec
    nd = results["slo/error_rate"]
    assert nd["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "slo.yaml", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 11}}
    assert "no data" in nd["message"]["text"]
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert [rules[r["ruleIndex"]]["id"] for r in results.values()] == list(results)


def test_spec_line_when_spans_name_no_code(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    results = _by_rule(_sarif(tmp_path, code=False))
    assert results["slo/db_queries"]["locations"][0]["physicalLocation"]["region"] == \
        {"startLine": 7}
    assert results["detector/n_plus_one"]["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "slo.yaml", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 1}}  # no detectors: entry in this spec
    (tmp_path / "slo.yaml").write_text(SPEC + "detectors:\n  n_plus_one: {fail: true}\n")
    report = json.loads((tmp_path / "reports" / "slo-report.json").read_text())
    log = to_sarif(report)
    assert _by_rule(log)["detector/n_plus_one"]["locations"][0]["physicalLocation"][
        "region"] == {"startLine": 13}


def test_schema_rejects_what_code_scanning_would() -> None:
    bad = to_sarif({"results": [], "findings": [], "traces": {}})
    jsonschema.Draft4Validator(SCHEMA).validate(bad)
    bad["runs"][0]["results"].append({"message": {"text": "x"}, "level": "fatal"})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(SCHEMA).validate(bad)
