"""Report files and the terminal view carry every result and, per failure, the why and the trace."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console
from spangen import ORDER, PRODUCTS, generate

from slo.judge.baseline import build_baseline
from slo.judge.check import run_check
from slo.judge.spec import parse_spec
from slo.report.writers import print_report, to_junit, to_markdown, write_reports

SPEC = parse_spec(f"""\
version: 1
detectors:
  sensitive_data: {{fail: false}}
slos:
  - name: order-detail
    select: {{service: order-service, span: "{ORDER}"}}
    objectives: {{latency_p95: 100ms, error_rate: 1%}}
  - name: product-list
    select: {{service: product-service, span: "{PRODUCTS}"}}
    objectives: {{latency_p95: 1s, db_queries: 5, repeated_queries: 3}}
""", "slo.yaml")


@pytest.fixture(scope="module")
def failing() -> dict:
    base = build_baseline(SPEC, generate(300, seed=1, run_id="base"))
    cand = generate(300, seed=2, run_id="cand", bugs=["n_plus_one", "slow_downstream"])
    return run_check(SPEC, cand, base)


@pytest.fixture(scope="module")
def passing() -> dict:
    return run_check(SPEC, generate(200, seed=3, run_id="ok"))


def test_files_are_written(failing: dict, tmp_path: Path) -> None:
    paths = write_reports(failing, tmp_path / "reports")
    assert sorted(p.name for p in paths.values()) == ["junit.xml", "slo-report.html",
                                                     "slo-report.json", "slo-report.md",
                                                     "slo-report.sarif"]
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(failing))
    assert "<html" in paths["html"].read_text().lower()
    assert oct(paths["json"].stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert not [p for p in (tmp_path / "reports").iterdir() if p.name not in
                {"junit.xml", "slo-report.html", "slo-report.json", "slo-report.md",
                 "slo-report.sarif"}]


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_markdown_has_table_why_and_waterfall(failing: dict) -> None:
    md = to_markdown(failing)
    assert md.startswith("## ❌ SLO check failed")
    assert "run `cand` · baseline `base`" in md
    assert md.count("\n| `order-detail` |") + md.count("\n| `product-list` |") == len(
        failing["results"])
    assert "### Why" in md and "**`product-list` · `repeated_queries`**" in md
    assert "SELECT name FROM categories WHERE id = ?" in md
    assert "```text" in md and "◀ culprit" in md
    assert "| span group | baseline p50 (mean) | candidate p50 (mean) | share of added time |" in md
    assert "### Findings" in md and "n_plus_one" in md


def test_markdown_of_a_pass(passing: dict) -> None:
    md = to_markdown(passing)
    assert md.startswith("## ✅ SLO check passed") and "### Why" not in md


def test_junit_one_case_per_objective_with_explanations(failing: dict) -> None:
    root = ET.fromstring(to_junit(failing))
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    failing_findings = [f for f in failing["findings"] if f["fails"]]
    assert len(cases) == len(failing["results"]) + len(failing_findings)
    failed = [c for c in cases if c.find("failure") is not None]
    bad = [r for r in failing["results"] if r["status"] != "pass"]
    assert int(suite.get("failures")) == len(failed) == len(bad) + len(failing_findings)
    by_name = {(c.get("classname"), c.get("name")): c for c in cases}
    for r in bad:
        f = by_name[(f"slo.{r['slo']}", r["objective"])].find("failure")
        assert f is not None and f.get("message") == r["explanation"]
        assert f.get("type") == r["status"]


def test_junit_of_a_pass_has_no_failures(passing: dict) -> None:
    suite = ET.fromstring(to_junit(passing)).find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert len(suite.findall("testcase")) == len(passing["results"])


def test_terminal_table_and_waterfalls(failing: dict) -> None:
    console = Console(record=True, width=120, no_color=True)
    print_report(failing, console)
    text = console.export_text()
    assert "SLO check · run cand vs baseline base" in text
    assert "latency_regression" in text and "order-detail" in text
    assert "✗ order-detail · latency_p95" in text
    assert "◀ culprit" in text and "promotion-service" in text
    assert "finding n_plus_one" in text
    assert text.rstrip().endswith("verdict: fail")
