"""Locust beyond one process, on the compose file's own commands, against PostgreSQL and Redis.

One stack (collector forwarding to a Jaeger stand-in, the five SUT services each started by
its own `sut serve`, on the machine's PostgreSQL and Redis), the compose master's web UI and
a worker passing their health checks with the SLO tab switching a bug on, then two load runs:
  1. the compose file's `locust-master` and two `locust-worker`s, headless through variables
     only, with `n_plus_one` switched on at run time by `sut bugs`: the master's verdict fails
     and becomes its exit code (1) while the workers exit 0;
  2. `locust --processes 2` with the plugin, bug off: the verdict passes, exit 0.
The spec holds only count objectives (and no timing detector), so the verdicts do not depend
on the machine's speed.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
import stack_harness as harness
import yaml

pytestmark = pytest.mark.e2e

SPEC = """\
version: 1
slos:
  - name: product-list
    select: {service: product-service, span: "GET /products"}
    objectives:
      repeated_queries: 3
      error_rate: 10%
  - name: order-detail
    select: {service: order-service, span: "GET /orders/<int:order_id>"}
    objectives:
      db_queries: 8
      error_rate: 10%
detectors:
  # Timing-based, and a 2-core box shared with the SUT delays threads at random: not what
  # this test is about. Counts (n_plus_one) and whole traces (broken_trace) stay failing.
  serial_fanout: {fail: false}
"""
LOAD = {"LOCUST_USERS": "6", "LOCUST_SPAWN_RATE": "6", "LOCUST_RUN_TIME": "6s"}


def _report(path: Path) -> dict:
    return json.loads((path / "slo-report.json").read_text())


def _sut_bugs(stack, action: str, *bugs: str) -> str:
    proc = subprocess.run(
        [str(harness.BIN / "sut"), "bugs", action, *bugs, "--base-port", str(stack.sut_base),
         "--token", "change-me"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def _prometheus_targets() -> list[tuple[str, int, str]]:
    cfg = yaml.safe_load((harness.ROOT / "deploy" / "prometheus.yml").read_text())
    return [
        (host, int(port), job.get("metrics_path", "/metrics"))
        for job in cfg["scrape_configs"] for sc in job["static_configs"]
        for host, port in (t.rsplit(":", 1) for t in sc["targets"])
    ]


def test_master_workers_and_processes_on_the_compose_commands(tmp_path: Path) -> None:
    stack = harness.HostStack(
        tmp_path, db_url=harness.pg_url("slo_e2e_stack"), cache_url=f"{harness.REDIS_BASE}/12"
    )
    spec = tmp_path / "counts.yaml"
    spec.write_text(SPEC)
    store = tmp_path / "data" / "store"
    try:
        stack.start_core()

        # 0. `docker compose up` as written: the master's web UI and a worker pass their
        #    compose health checks, and the SLO tab's bug switch reaches all five services
        #    (the way to switch bugs on containers, where `sut bugs` cannot see the peers).
        ui, worker = stack.start("locust-master", label="locust-master-ui"), stack.start("locust-worker")
        stack.wait_healthy({"locust-master": ui, "locust-worker": worker}, timeout=90)
        web = f"http://127.0.0.1:{stack.port('locust-master', 8089)}"
        with urllib.request.urlopen(f"{web}/slo/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        req = urllib.request.Request(f"{web}/slo/api/bugs", method="POST",
                                     data=json.dumps({"bug": "n_plus_one", "on": True}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert "n_plus_one" in json.loads(r.read())["bugs"]
        listed = _sut_bugs(stack, "list").splitlines()  # one line, or one per service if they differ
        assert listed and all("n_plus_one" in line for line in listed), listed
        worker.stop()
        ui.stop()

        # 1. master + 2 workers, as `docker compose up --scale locust-worker=2` runs them,
        #    made headless by variables alone; n_plus_one is on since step 0.
        master = stack.start("locust-master", extra_env={
            **LOAD, "LOCUST_HEADLESS": "true", "LOCUST_EXPECT_WORKERS": "2",
            "LOCUST_EXPECT_WORKERS_MAX_WAIT": "60", "LOCUST_SLO_SPEC": str(spec),
            "LOCUST_SLO_REPORT_DIR": str(tmp_path / "r1"), "LOCUST_SLO_SETTLE": "2",
        })
        workers = [stack.start("locust-worker", label=f"locust-worker-{i}") for i in (1, 2)]
        code = master.wait(timeout=150)
        assert code == 1, f"master exit {code}, expected 1 (n_plus_one):\n{master.tail()}"
        for w in workers:
            assert w.wait(timeout=30) == 0, w.tail()
        report = _report(tmp_path / "r1")
        assert report["verdict"] == "fail"
        failed = [r for r in report["results"] if r["status"] == "fail"]
        assert any(r["slo"] == "product-list" and r["objective"] == "repeated_queries" for r in failed), failed
        assert any(f["detector"] == "n_plus_one" and f["service"] == "product-service"
                   for f in report["findings"]), report["findings"]
        from slo.ingest.store import SpanStore

        # A master runs no users: every request it counted came from the workers' reports.
        meta = SpanStore(store).read_run_meta(report["run_id"])
        assert meta and meta["requests"] > 0, meta
        assert meta["workers"] == 2, meta

        # What Prometheus scrapes (deploy/prometheus.yml's targets) answers with request metrics.
        for host, port, path in _prometheus_targets():
            with urllib.request.urlopen(f"http://127.0.0.1:{stack.port(host, port)}{path}", timeout=10) as r:
                text = r.read().decode()
            assert "# TYPE" in text and "http_server" in text, (host, text[:500])

        # 2. --processes 2 with the plugin (one command, forked workers), bug off: pass.
        _sut_bugs(stack, "disable", "n_plus_one")
        #    Its forked workers dial --master-port while the parent binds --master-bind-port:
        #    away from the default 5557 both must be given.
        order = f"http://127.0.0.1:{stack.port('order-service', 8080)}"
        port = str(harness.free_port())
        proc = stack.start("locust-worker", label="locust-processes", argv=[
            str(harness.BIN / "locust"), "-f", "loadtests/locustfile.py", "--headless",
            "--processes", "2", "-u", "6", "-r", "6", "-t", "6s", "--host", order,
            "--master-bind-host", "127.0.0.1", "--master-bind-port", port, "--master-port", port,
            "--expect-workers-max-wait", "60",
            "--slo-store", str(store), "--slo-spec", str(spec),
            "--slo-report-dir", str(tmp_path / "r2"), "--slo-settle", "2",
        ])
        code = proc.wait(timeout=150)
        assert code == 0, f"--processes 2 exit {code}:\n{proc.tail()}"
        report = _report(tmp_path / "r2")
        assert report["verdict"] == "pass", [r for r in report["results"] if r["status"] != "pass"]
        assert all(r["samples"] > 0 for r in report["results"] if r["objective"] == "error_rate")
        meta = SpanStore(store).read_run_meta(report["run_id"])
        assert meta and meta["workers"] == 2, meta  # --processes 2: two forked workers

        # The collector forwarded what it stored to "Jaeger" (its OTLP/HTTP port).
        forwarded = SpanStore(tmp_path / "jaeger-store")
        assert sum(r.spans for r in forwarded.runs()) > 0
    finally:
        stack.stop_all()
