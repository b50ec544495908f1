"""Locust beyond one process, on the compose file's own commands, against PostgreSQL and Redis.

One stack (collector forwarding to a Jaeger stand-in, the five SUT services each started by
its own `sut serve`, on the machine's PostgreSQL and Redis), then two load runs:
  1. the compose file's `locust-master` and two `locust-worker`s, headless through variables
     only, with `n_plus_one` switched on at run time by `sut bugs`: the master's verdict fails
     and becomes its exit code (1) while the workers exit 0;
  2. `locust --processes 2` with the plugin, bug off: the verdict passes, exit 0.
The spec holds only count objectives (and no timing detector), so the verdicts do not depend
on the machine's speed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

_here = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_slo_host_stack", _here / "test_stack_postgres_redis_harness.py")
assert _spec and _spec.loader
harness = sys.modules.get("_slo_host_stack") or importlib.util.module_from_spec(_spec)
if "_slo_host_stack" not in sys.modules:
    sys.modules["_slo_host_stack"] = harness
    _spec.loader.exec_module(harness)

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


def _sut_bugs(stack, action: str, bug: str) -> None:
    proc = subprocess.run(
        [str(harness.BIN / "sut"), "bugs", action, bug, "--base-port", str(stack.sut_base),
         "--token", "change-me"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_master_workers_and_processes_on_the_compose_commands(tmp_path: Path) -> None:
    stack = harness.HostStack(
        tmp_path, db_url=harness.pg_url("slo_e2e_stack"), cache_url=f"{harness.REDIS_BASE}/7"
    )
    spec = tmp_path / "counts.yaml"
    spec.write_text(SPEC)
    store = tmp_path / "data" / "store"
    try:
        stack.start_core()

        # 1. master + 2 workers, as `docker compose up --scale locust-worker=2` runs them,
        #    made headless by variables alone; the bug is switched on at run time.
        _sut_bugs(stack, "enable", "n_plus_one")
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
        from slo.store import SpanStore

        # A master runs no users: every request it counted came from the workers' reports.
        meta = SpanStore(store).read_run_meta(report["run_id"])
        assert meta and meta["requests"] > 0, meta

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

        # The collector forwarded what it stored to "Jaeger" (its OTLP/HTTP port).
        forwarded = SpanStore(tmp_path / "jaeger-store")
        assert sum(r.spans for r in forwarded.runs()) > 0
    finally:
        stack.stop_all()
