"""`slo check` end to end: sources, baselines, reports, and exit codes 0 / 1 / 2."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from spangen import ORDER, PRODUCTS, generate, generate_rows, to_otlp_json

from slo.cli import main
from slo.ingest.store import StoreWriter
from slo.judge.baseline import load_baseline

SLO = str(Path(sys.executable).with_name("slo"))
T0 = 1_767_225_600_000_000_000

SPEC = f"""\
version: 1
detectors:
  sensitive_data: {{fail: false}}
slos:
  - name: order-detail
    select: {{service: order-service, span: "{ORDER}"}}
    objectives: {{latency_p95: 1s, error_rate: 5%, db_queries: 8}}
  - name: product-list
    select: {{service: product-service, span: "{PRODUCTS}"}}
    objectives: {{latency_p95: 1s, db_queries: 5, repeated_queries: 3}}
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    (d / "slo.yaml").write_text(SPEC)
    w = StoreWriter(d / "store")
    w.append(generate(400, seed=1, run_id="base", start_ns=T0))
    w.append(generate(400, seed=2, run_id="cand", bugs=["n_plus_one"], start_ns=T0 + 10**11))
    w.close()
    return d


def slo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="120")
    return subprocess.run([SLO, "check", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


def test_regression_against_a_baseline_run_exits_1_with_reports(work: Path) -> None:
    p = slo("--store", "store", "--baseline-run", "base", "--report-dir", "out",
            "--save-baseline", "saved.json", cwd=work)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    out = p.stdout
    assert "SLO check · run cand vs baseline base" in out  # latest run by default
    assert "✗ product-list · db_queries" in out and "◀ culprit" in out
    assert "SELECT name FROM categories WHERE id = ?" in out
    assert "verdict: fail" in out
    for name in ("slo-report.json", "slo-report.md", "junit.xml", "slo-report.html"):
        assert (work / "out" / name).stat().st_size > 0
    report = json.loads((work / "out" / "slo-report.json").read_text())
    assert report["verdict"] == "fail" and report["run_id"] == "cand"
    assert report["baseline_run_id"] == "base"
    assert load_baseline(work / "saved.json")["run_id"] == "cand"


def test_otlp_files_against_a_saved_baseline(work: Path, tmp_path: Path) -> None:
    """A/A through files: the saved baseline of one run, a second draw of the same system."""
    r = CliRunner().invoke(main, ["check", "--spec", str(work / "slo.yaml"), "--store",
                                  str(work / "store"), "--run-id", "base", "--report-dir",
                                  str(tmp_path / "r0"), "--save-baseline",
                                  str(tmp_path / "base.json.gz"), "--format", "quiet"])
    assert r.exit_code == 0, r.output
    rows = generate_rows(400, seed=3, run_id="again", start_ns=T0 + 2 * 10**11)
    f = tmp_path / "spans.json"
    f.write_text(json.dumps(to_otlp_json(rows)))
    p = slo("--traces", str(f), "--baseline", str(tmp_path / "base.json.gz"),
            "--report-dir", str(tmp_path / "r1"), "--format", "json", cwd=work)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    report = json.loads(p.stdout)
    assert report["verdict"] == "pass" and report["run_id"] == "again"
    assert report["baseline_run_id"] == "base"
    assert any(r["kind"] == "regression" for r in report["results"])


def test_bad_spec_exits_2_with_file_and_line(work: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(work)
    (work / "bad.yaml").write_text("version: 1\nslos:\n  - name: x\n    select: {servce: a}\n"
                                   "    objectives: {latency_p95: fast}\n")
    r = CliRunner().invoke(main, ["check", "--spec", "bad.yaml", "--store", "store"])
    assert r.exit_code == 2
    assert "bad.yaml:4: unknown key 'servce'" in r.stderr
    assert "bad.yaml:5: objective latency_p95: expected a duration" in r.stderr
    assert "Traceback" not in r.output and r.stdout == ""


def test_bad_detector_option_exits_2_with_file_and_line(work: Path) -> None:
    """Validated once, in the spec: the line of the option, before any span is read."""
    (work / "neg.yaml").write_text(SPEC.replace("  sensitive_data: {fail: false}\n",
                                                "  sensitive_data: {fail: false}\n"
                                                "  serial_fanout:\n    min_calls: -1\n"))
    p = slo("--spec", "neg.yaml", "--store", "store", cwd=work)
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.strip() == ("Error: neg.yaml:5: detector serial_fanout min_calls: expected a "
                                "whole number >= 0, got -1")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--store", "nowhere"], "no span store at nowhere"),
        (["--store", "store", "--run-id", "nope"], "run 'nope' is not in span store"),
        (["--store", "store", "--baseline", "missing.json"], "baseline file not found"),
        (["--store", "store", "--baseline", "slo.yaml"], "not a baseline (corrupt JSON"),
        (["--store", "store", "--baseline-run", "cand"], "is the run being checked"),
        (["--traces", "x.json", "--jaeger", "http://127.0.0.1:9"], "either --traces or"),
        (["--traces", "missing.json"], "cannot read trace file missing.json"),
        (["--jaeger", "http://127.0.0.1:9", "--since", "yesterday"], "is not a time"),
    ],
)
def test_could_not_run_exits_2_in_one_line(work: Path, args: list[str], needle: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(work)
    r = CliRunner().invoke(main, ["check", "--spec", "slo.yaml", "--report-dir", "out-err",
                                  *args])
    assert r.exit_code == 2, r.output
    err = r.output.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: ") and needle in err[0], r.output


def test_no_data_exits_1(work: Path, tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("version: 1\nslos:\n  - name: ghost\n    select: "
                                     "{service: billing-service}\n    objectives: "
                                     "{error_rate: 1%}\n")
    r = CliRunner().invoke(main, ["check", "--spec", str(tmp_path / "s.yaml"), "--store",
                                  str(work / "store"), "--run-id", "base", "--report-dir",
                                  str(tmp_path / "r"), "--format", "markdown"])
    assert r.exit_code == 1, r.output
    assert "no data" in r.output and "billing-service" in r.output


def test_time_window_on_the_store(work: Path, tmp_path: Path) -> None:
    args = ["check", "--spec", str(work / "slo.yaml"), "--store", str(work / "store"),
            "--run-id", "base", "--report-dir", str(tmp_path / "r"), "--format", "json"]
    t0 = T0 // 10**9
    inside = CliRunner().invoke(main, [*args, "--since", str(t0 - 1), "--until", str(t0 + 90)])
    assert inside.exit_code == 0, inside.output
    assert json.loads(inside.stdout)["run"]["spans"] > 1000
    after = CliRunner().invoke(main, [*args, "--since", str(t0 + 3600)])
    assert after.exit_code == 1
    assert {r["status"] for r in json.loads(after.stdout)["results"]} == {"no_data"}


class _FakeJaeger(http.server.BaseHTTPRequestHandler):
    """Jaeger v2's query API, answering every trace search with the same OTLP/JSON."""

    body: bytes = b""

    def do_GET(self) -> None:  # http.server's name
        path = self.path.split("?")[0]
        if path == "/api/v3/services":
            data = json.dumps({"services": ["order-service"]}).encode()
        elif path == "/api/v3/traces":
            data = self.body
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_jaeger_source(work: Path, tmp_path: Path) -> None:
    rows = generate_rows(150, seed=4, run_id="jaeger-run", start_ns=T0,
                         mix={"order": 1.0})
    handler = type("H", (_FakeJaeger,), {"body": json.dumps(
        {"result": to_otlp_json(rows)}).encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        p = slo("--jaeger", url, "--since", str(T0 // 10**9 - 60), "--until",
                str(T0 // 10**9 + 600), "--report-dir", str(tmp_path / "r"), "--format",
                "json", cwd=work)
    finally:
        server.shutdown()
        server.server_close()
    assert p.returncode == 1, p.stderr  # product-list has no data in an orders-only run
    report = json.loads(p.stdout)
    assert report["run_id"] == "jaeger-run"
    od = [r for r in report["results"] if r["slo"] == "order-detail"]
    assert od and all(r["status"] == "pass" and r["samples"] == 150 for r in od)
    assert {r["status"] for r in report["results"] if r["slo"] == "product-list"} == {
        "no_data"}
