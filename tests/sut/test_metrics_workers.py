"""/metrics of a service with several gunicorn workers counts the requests of all of them
(prometheus_client multiprocess mode), whichever worker answers the scrape."""

from __future__ import annotations

import re
import shutil
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sut_helpers import SutProcess, free_base_port, http

REQUESTS = 60


def _count(text: str, route: str) -> float:
    pattern = (r'^http_server_request_duration_seconds_count\{[^}]*http_route="'
               + re.escape(route) + r'"[^}]*\} (\S+)$')
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M))


def test_metrics_add_up_across_workers(seeded_db: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(seeded_db, data / "sut.db")
    stale = data / "metrics" / "user-service"
    stale.mkdir(parents=True)
    (stale / "counter_999999.db").write_bytes(b"left by an earlier run")
    base = free_base_port()
    sut = SutProcess(["--data-dir", str(data), "--base-port", str(base), "--workers", "3",
                      "--threads", "2"], {"OTEL_SDK_DISABLED": "true", "SUT_ADMIN_TOKEN": ""})
    try:
        users = f"http://127.0.0.1:{base + 1}"
        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(lambda i: http("GET", f"{users}/users/{i % 50 + 1}")[0],
                                     range(REQUESTS)))
        assert statuses == [200] * REQUESTS
        # the requests were shared out: more than one worker wrote samples
        pids = {p.stem.rsplit("_", 1)[1] for p in stale.glob("histogram_*.db")}
        assert len(pids) >= 2, sorted(p.name for p in stale.iterdir())
        assert not (stale / "counter_999999.db").exists()  # an earlier run's files are gone
        for _ in range(6):  # whichever worker answers, the service's total
            with urllib.request.urlopen(users + "/metrics", timeout=10) as r:
                text = r.read().decode()
            assert _count(text, "/users/<int:user_id>") == REQUESTS, text[:2000]
            assert 'service_name="user-service"' in text
    finally:
        assert sut.stop() == 0
