"""The Locust SLO plugin for real: headless exit codes and the web UI's SLO tab in Chromium.

One stack for the module (collector + SUT on free ports, started the way `slo gate` starts
them), then real `locust` processes against it. The spec holds count objectives and error
rates only, so verdicts do not depend on the machine's speed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from slo.gate import Gate, GateConfig
from slo.gate.procs import http_ok
from slo.ports import free_port
from slo.supervisor import Supervisor

pytestmark = pytest.mark.e2e

SPEC = """\
version: 1
detectors:
  n_plus_one: {fail: true}
slos:
  - name: product-list
    select: {service: product-service, span: "GET /products"}
    objectives:
      repeated_queries: 3
      db_queries: 5
      error_rate: 20%
  - name: order-detail
    select: {service: order-service, span: "GET /orders/<int:order_id>"}
    objectives:
      db_queries: 10
      error_rate: 20%
"""
LOCUSTFILE = str(Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    work = tmp_path_factory.mktemp("locust-stack")
    gate = Gate(GateConfig(workdir=str(work)), out=lambda _line: None)
    try:
        gate.start_stack()
        yield gate
    finally:
        gate.shutdown()


@pytest.fixture()
def spec(tmp_path: Path) -> str:
    path = tmp_path / "slo.yaml"
    path.write_text(SPEC)
    return str(path)


def _locust(stack: Gate, cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, SUT_ADMIN_TOKEN=stack.token)
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--host",
         f"http://127.0.0.1:{stack.base_port}", "--slo-store", str(stack.store_path),
         "--slo-otlp-endpoint", f"http://127.0.0.1:{stack.collector_port}",
         "--slo-settle", "1", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def _headless(stack: Gate, tmp_path: Path, spec: str, *args: str) -> subprocess.CompletedProcess:
    return _locust(stack, tmp_path, "--headless", "-u", "6", "-r", "6", "-t", "3s",
                   "--slo-spec", spec, "--slo-report-dir", str(tmp_path / "reports"), *args)


def test_headless_pass_exit_0_with_run_meta(stack: Gate, tmp_path: Path, spec: str) -> None:
    stack.target.admin_bugs([])
    proc = _headless(stack, tmp_path, spec, "--slo-run-id", "plugin-pass")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "reports" / "slo-report.json").read_text())
    assert report["verdict"] == "pass" and report["run_id"] == "plugin-pass"
    assert "SLO verdict: PASS" in proc.stdout
    from slo.ingest.store import SpanStore

    meta = SpanStore(stack.store_path).read_run_meta("plugin-pass")
    assert meta and meta["requests"] > 0 and meta["users"] == 6
    assert meta["start_ns"] < meta["end_ns"]
    spans = SpanStore(stack.store_path).read(["plugin-pass"])
    services = set(spans.column("service").to_pylist())
    assert {"locust", "order-service", "product-service"} <= services


def test_headless_fail_exit_1(stack: Gate, tmp_path: Path, spec: str) -> None:
    stack.target.admin_bugs(["n_plus_one"])
    try:
        proc = _headless(stack, tmp_path, spec)
    finally:
        stack.target.admin_bugs([])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "reports" / "slo-report.json").read_text())
    failing = {(r["slo"], r["objective"]) for r in report["results"] if r["status"] == "fail"}
    assert ("product-list", "repeated_queries") in failing, failing
    assert (tmp_path / "reports" / "junit.xml").is_file()


def test_headless_bad_spec_exit_2(stack: Gate, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nslos:\n  - name: x\n    selct: {}\n")
    proc = _locust(stack, tmp_path, "--headless", "-u", "1", "-t", "1s", "--slo-spec", str(bad))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "bad.yaml" in proc.stdout


def test_web_ui_slo_tab_in_chromium(stack: Gate, tmp_path: Path, spec: str) -> None:
    """Start a swarm from Locust's UI, switch n_plus_one on in the SLO tab, see it fail."""
    from playwright.sync_api import expect, sync_playwright

    stack.target.admin_bugs([])
    port = free_port()
    env = dict(os.environ, SUT_ADMIN_TOKEN=stack.token)
    url = f"http://127.0.0.1:{port}"
    # the project's supervisor: Locust in its own process group, its output in tmp_path, and
    # a readiness wait that stops at once (quoting that output) if Locust dies first
    sup = Supervisor(tmp_path, error=AssertionError)
    proc = sup.spawn("locust", [
        sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--host",
        f"http://127.0.0.1:{stack.base_port}", "--slo-store", str(stack.store_path),
        "--slo-otlp-endpoint", f"http://127.0.0.1:{stack.collector_port}",
        "--slo-spec", spec, "--slo-live-window", "4", "--slo-live-interval", "1", "--slo-admin-token", stack.token,
        "--web-host", "127.0.0.1", "--web-port", str(port), "-u", "6", "-r", "6"], env)
    try:
        sup.wait_until("the locust web UI", lambda: http_ok(url + "/"), [proc], timeout=30,
                       interval=0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(url + "/")
                expect(page.locator("#slo-dashboard-link")).to_be_visible(timeout=15_000)
                # start the swarm with the UI's own form (users and rate come from -u/-r)
                page.get_by_role("button", name="Start").click()
                expect(page.get_by_role("tab", name="SLO")).to_be_visible(timeout=15_000)

                page.goto(url + "/slo/")
                row = page.locator('tr[data-slo="product-list"][data-objective="repeated_queries"]')
                expect(row).to_have_attribute("data-status", "pass", timeout=30_000)
                page.locator("#bug-n_plus_one").check()
                expect(row).to_have_attribute("data-status", "fail", timeout=40_000)
                page.screenshot(path=str(tmp_path / "slo-tab.png"), full_page=True)
                link = row.locator("a.trace-link")
                expect(link).to_be_visible()
                href = link.get_attribute("href")
                page.goto(f"{url}/slo/{href}")
                expect(page.locator("body")).to_contain_text("product-service")
                page.screenshot(path=str(tmp_path / "slo-trace.png"), full_page=True)
                shutil.copy(tmp_path / "slo-tab.png", Path(tempfile.gettempdir()) / "slo-tab.png")
                shutil.copy(tmp_path / "slo-trace.png", Path(tempfile.gettempdir()) / "slo-trace.png")
            finally:
                browser.close()
    finally:
        stack.target.admin_bugs([])
        sup.stop(timeout=15)
