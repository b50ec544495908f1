"""A head-sampled SUT run (OTEL_TRACES_SAMPLER=traceidratio in every service) through the real
collector: its traces arrive whole but few, and the check says the run is sampled."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from sut_helpers import SutProcess, free_base_port, http

from slo.ingest.collector import CollectorConfig, start
from slo.ingest.store import SpanStore
from slo.judge.check import run_check
from slo.judge.spec import parse_spec
from slo.report.writers import to_markdown

SPEC = parse_spec("""
version: 1
slos:
  - name: order-detail
    select: {service: order-service, span: "GET /orders/<int:order_id>"}
    objectives: {latency_p95: 5s, db_queries: 12}
""")
REQUESTS = 60


def test_head_sampled_run_is_said(seeded_db: Path, tmp_path: Path) -> None:
    collector = start(CollectorConfig(store=str(tmp_path / "store"), port=0, grpc_port=-1))
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(seeded_db, data / "sut.db")
    base = free_base_port()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.http_port}",
           "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_TRACES_SAMPLER": "traceidratio",
           "OTEL_TRACES_SAMPLER_ARG": "0.25", "SUT_ADMIN_TOKEN": ""}
    sut = SutProcess(["--data-dir", str(data), "--base-port", str(base)], env)
    try:
        for i in range(REQUESTS):
            status, _ = http("GET", f"http://127.0.0.1:{base}/orders/{i + 1}",
                             headers={"baggage": "slo.run_id=sampled-1"})
            assert status == 200
    finally:
        assert sut.stop() == 0  # flushes every service's spans
    time.sleep(0.5)
    collector.stop()
    spans = SpanStore(tmp_path / "store").read("sampled-1")
    report = run_check(SPEC, spans, run_meta={"load": {"requests": REQUESTS}})
    c = report["completeness"]
    assert 0 < c["traces"] < 0.8 * REQUESTS  # about a quarter kept
    assert c["complete"] == c["traces"]  # every service decided alike: whole traces
    assert c["sampled"] and c["signals"] == [
        f"the load sent {REQUESTS} requests but {c['traces']} traces arrived: the services "
        "sample (or drop) whole traces"]
    md = to_markdown(report)
    print(md.split("### Findings")[0])
    from slo.report.writers import print_report
    print_report(report)
    assert f"Traces: {c['traces']} of {c['traces']} traces complete. Sampled run: the load " \
           f"sent {REQUESTS} requests" in md
    # the same spans without the load's count: nothing says sampled, nothing is invented
    assert not run_check(SPEC, spans)["completeness"]["sampled"]
