"""`sut up` forks its five gunicorn masters from one process that imported what they serve
with (sut.runner.preload_services): what a worker still imports after the fork is what it
must import there, nothing the preload could have done once for all five."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: imported by each worker on purpose: prometheus_client picks its multiprocess mode from the
#: environment when imported, and each service has its own directory (sut/metrics.py)
AFTER_FORK = ("prometheus_client", "mmap", "wsgiref")

PROBE = """
import json, os, sys
from sut.runner import preload_services
from sut.metrics import multiprocess_env
preload_services()
multiprocess_env(sys.argv[2], "order-service")  # what `sut up` calls before it forks
before = set(sys.modules)
from sut import SERVICES
from sut.app import create_app
for name in SERVICES:
    create_app(name)
print(json.dumps({"prometheus_before": "prometheus_client" in before,
                  "after": sorted(set(sys.modules) - before)}))
"""


def test_a_forked_worker_imports_only_what_must_come_after_the_fork(seeded_db: Path,
                                                                    tmp_path: Path) -> None:
    env = {"SUT_DB": str(seeded_db), "SUT_DATA_DIR": str(tmp_path),
           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(seeded_db), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert not seen["prometheus_before"], "prometheus_client imported before the fork"
    late = [m for m in seen["after"] if m.split(".")[0] not in AFTER_FORK]
    assert late == [], f"imported by every worker after the fork; preload them: {late}"


def test_a_stopping_master_looks_at_its_workers_often(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """gunicorn's master waits for its stopped workers in 0.1 s sleeps (and once more after
    the last has gone); the SUT's masters take at most STOP_POLL while they stop, and only
    then: the gate waits for the SUT's exit after every load."""
    import time

    import gunicorn.arbiter as arbiter

    from sut.runner import STOP_POLL, prompt_arbiter

    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)

    def gunicorn_stop(self, graceful: bool = True) -> None:  # type: ignore[no-untyped-def]
        arbiter.time.sleep(0.1)  # what gunicorn's stop does between two looks at its workers

    monkeypatch.setattr(arbiter.Arbiter, "stop", gunicorn_stop)
    master = object.__new__(prompt_arbiter())
    master.stop()
    assert slept == [STOP_POLL] and STOP_POLL <= 0.01
    assert arbiter.time is time  # outside the stop: gunicorn's own clock again
