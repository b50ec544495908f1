"""`slo gate` for real: collector, SUT and Locust as processes, a few seconds of load per side.

Three gates on the embedded defaults: no bug (exit 0), `n_plus_one` and `missing_index`
(exit 1, with the SLO and the explanation that name the cause). Every gate must also leave
no process behind.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SLO = str(Path(sys.executable).with_name("slo"))
SHORT = ["--duration", "3", "--users", "8"]


def _gate(tmp_path: Path, *args: str) -> tuple[int, str, dict]:
    reports = tmp_path / "reports"
    env = dict(os.environ, SLO_GATE_SEED_DIR=str(_cache_dir()))
    proc = subprocess.run(
        [SLO, "gate", *SHORT, "--report-dir", str(reports), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    out = proc.stdout + proc.stderr
    report = json.loads((reports / "slo-report.json").read_text()) if proc.returncode in (0, 1) else {}
    return proc.returncode, out, report


def _cache_dir() -> Path:
    """Gates share one seeded SUT database (seeding is the slow part of a first start)."""
    path = Path(os.environ.get("SLO_GATE_SEED_DIR") or Path.home() / ".cache" / "slo-harness")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _no_leftovers(out: str) -> None:
    """Once the gate returned, nothing it started still listens (collector, five services)."""
    collector = re.search(r"starting collector on :(\d+)", out)
    sut = re.search(r"starting SUT on :(\d+)-(\d+)", out)
    assert collector and sut, out
    ports = [int(collector.group(1)), *range(int(sut.group(1)), int(sut.group(2)) + 1)]
    for port in ports:
        with socket.socket() as s:
            s.settimeout(0.5)
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open after the gate"


def _failing(report: dict) -> list[dict]:
    return [r for r in report["results"] if r["status"] != "pass"]


def test_gate_without_bug_passes(tmp_path: Path) -> None:
    code, out, report = _gate(tmp_path)
    assert code == 0, out
    assert report["verdict"] == "pass", out
    assert report["baseline_run_id"] and report["run_id"] != report["baseline_run_id"]
    assert "baseline phase" in out and "candidate phase" in out and "left" in out
    assert all(r["samples"] > 0 for r in report["results"] if r["objective"] == "latency_p95")
    assert (tmp_path / "reports" / "junit.xml").is_file()
    assert (tmp_path / "reports" / "slo-report.md").is_file()
    _no_leftovers(out)


def test_gate_catches_n_plus_one(tmp_path: Path) -> None:
    code, out, report = _gate(tmp_path, "--bugs", "n_plus_one")
    assert code == 1, out
    assert report["verdict"] == "fail"
    failing = _failing(report)
    product_list = [r for r in failing if r["slo"] == "product-list"]
    assert {r["objective"] for r in product_list} & {
        "repeated_queries", "db_queries", "db_queries_regression", "repeated_queries_regression",
    }, failing
    assert any("categories" in r["explanation"].lower() for r in product_list), product_list
    # only the product list has the bug: nothing else may fail
    assert {r["slo"] for r in failing} == {"product-list"}, failing
    _no_leftovers(out)


def test_gate_catches_missing_index(tmp_path: Path) -> None:
    code, out, report = _gate(tmp_path, "--bugs", "missing_index")
    assert code == 1, out
    failing = _failing(report)
    latency = [r for r in failing if r["objective"].startswith("latency")]
    assert {r["slo"] for r in latency} & {"stock", "order-detail"}, failing
    assert any("inventory" in r["explanation"].lower() for r in latency), latency
    _no_leftovers(out)


def test_gate_bad_flags_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([SLO, "gate", "--bugs", "no_such_bug"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no_such_bug" in proc.stderr and "Traceback" not in proc.stderr
