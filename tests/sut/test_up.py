"""End to end: `sut up` as real gunicorn processes on free ports, a real order request through
all five services, spans arriving at a real OTLP/HTTP receiver, run-time switching across
workers, a clean stop that flushes spans, and one-line errors for what cannot run."""

from __future__ import annotations

import shutil
import socket

import pytest
from sut_helpers import SutProcess, free_base_port, http, run_sut
from sut_otlp import Receiver

from slo.ports import port_open
from sut import SERVICES

FIVE = set(SERVICES)


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    r = Receiver()
    yield r
    r.close()


def test_up_traces_switch_and_stop(seeded_db, tmp_path, receiver) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(seeded_db, data / "sut.db")  # seeded already: no second seeding
    base = free_base_port()
    # spans only leave on the batch schedule (long) or at shutdown: proves the flush on SIGTERM
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "60000",
           "SUT_ADMIN_TOKEN": ""}
    sut = SutProcess(["--data-dir", str(data), "--base-port", str(base), "--workers", "2",
                      "--threads", "4"], env)
    try:
        out = "\n".join(sut.lines)
        assert f"http://127.0.0.1:{base}" in out and f"http://127.0.0.1:{base + 4}" in out
        assert "admin token" in out and (data / "admin-token").exists()
        order = f"http://127.0.0.1:{base}"
        status, body = http("GET", order + "/orders/21", headers={"baggage": "slo.run_id=e2e-1"})
        assert status == 200 and body["id"] == 21
        # run-time switch through the CLI (token from the data dir), visible on both workers
        done = run_sut(["bugs", "enable", "serial_fanout", "--base-port", str(base),
                        "--data-dir", str(data)], env={"SUT_ADMIN_TOKEN": ""})
        assert done.returncode == 0, done.stderr
        assert "serial_fanout" in done.stdout
        import time

        time.sleep(1.0)
        for i in range(8):
            assert http("GET", order + f"/orders/{30 + i}",
                        headers={"baggage": "slo.run_id=e2e-2"})[0] == 200
        listed = run_sut(["bugs", "list", "--base-port", str(base), "--data-dir", str(data)])
        assert listed.returncode == 0 and "bugs: serial_fanout" in listed.stdout
        assert receiver.snapshot() == []  # nothing exported yet (60 s schedule)
    finally:
        code = sut.stop()
    assert code == 0, sut.errors[-20:]
    spans = receiver.wait_for(lambda s: len({x.trace_id for x in s}) >= 9, timeout=10)
    first = [s for s in spans if s.attributes.get("slo.run_id") == "e2e-1"]
    assert {s.service for s in first} == FIVE
    assert len({s.trace_id for s in first}) == 1
    root = [s for s in first if s.service == "order-service" and s.kind == 2]
    assert root and root[0].name == "GET /orders/<int:order_id>"
    assert any(s.attributes.get("db.query.text") for s in first)
    later = [s for s in spans if s.attributes.get("slo.run_id") == "e2e-2"
             and s.name == "GET /orders/<int:order_id>"]
    assert len(later) == 8
    assert all(s.attributes["order.fanout"] == "serial" for s in later)


def test_port_in_use_is_one_line_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = free_base_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", base + 2))
        s.listen()
        done = run_sut(["up", "--data-dir", str(tmp_path), "--base-port", str(base)])
    assert done.returncode == 2
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and f"port {base + 2} (product-service)" in err
    assert "Traceback" not in done.stderr


def test_unreachable_database_is_one_line_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, not listening: connection refused
        done = run_sut(["up", "--data-dir", str(tmp_path), "--base-port", str(free_base_port()),
                        "--db", f"postgresql://127.0.0.1:{dead}/test"])
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "cannot connect to database" in done.stderr


def test_unreachable_cache_is_one_line_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = run_sut(["up", "--data-dir", str(tmp_path), "--base-port", str(free_base_port()),
                    "--cache", "redis://127.0.0.1:1/0"])
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "cannot reach cache" in done.stderr


def test_cli_bad_input(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = run_sut(["up", "--db", "mysql://127.0.0.1/x", "--data-dir", str(tmp_path),
                    "--base-port", str(free_base_port())])
    assert done.returncode == 2 and "unsupported database URL" in done.stderr
    done = run_sut(["up", "--bugs", "n_plus_one,fast_mode", "--data-dir", str(tmp_path)])
    assert done.returncode == 2 and "fast_mode" in done.stderr and "missing_index" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_sut(["bugs", "enable", "--data-dir", str(tmp_path)], env={"SUT_ADMIN_TOKEN": ""})
    assert done.returncode == 2 and "name at least one bug" in done.stderr
    done = run_sut(["bugs", "list", "--data-dir", str(tmp_path)], env={"SUT_ADMIN_TOKEN": ""})
    assert done.returncode == 2 and "no admin token" in done.stderr
    done = run_sut(["bugs", "list", "--base-port", str(free_base_port()), "--token", "x"])
    assert done.returncode == 2 and "cannot reach order-service" in done.stderr
    assert "Traceback" not in done.stderr
    # services on other hosts (one container each) are found through SUT_*_URL
    elsewhere = f"http://127.0.0.1:{free_base_port(1)}"
    done = run_sut(["bugs", "list", "--base-port", str(free_base_port()), "--token", "x"],
                   env={"SUT_ORDER_URL": elsewhere})
    assert done.returncode == 2 and f"order-service at {elsewhere}/admin/bugs" in done.stderr


def test_serve_runs_one_service(seeded_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    shutil.copy(seeded_db, tmp_path / "sut.db")
    port = free_base_port(1)
    exe = str(Path(sys.executable).with_name("sut"))
    env = {**os.environ, "OTEL_SDK_DISABLED": "true", "SUT_ADMIN_TOKEN": "serve-token",
           "SUT_BUGS": "error_burst"}
    proc = subprocess.Popen([exe, "serve", "user-service", "--port", str(port), "--data-dir",
                             str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (_listening(port) and http("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        status, body = http("GET", f"http://127.0.0.1:{port}/admin/bugs", token="serve-token")
        assert status == 200 and body["bugs"] == ["error_burst"] and body["service"] == "user-service"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def _listening(port: int) -> bool:
    return port_open(port)


def test_restart_on_the_same_ports(seeded_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A second run right after the first (ports in TIME_WAIT, as between gate phases)."""
    shutil.copy(seeded_db, tmp_path / "sut.db")
    base = free_base_port()
    args = ["--data-dir", str(tmp_path), "--base-port", str(base), "--bugs", "n_plus_one"]
    env = {"OTEL_SDK_DISABLED": "true", "SUT_ADMIN_TOKEN": "restart"}
    for run in range(2):
        sut = SutProcess(args, env)
        try:
            for i in range(5):
                assert http("GET", f"http://127.0.0.1:{base}/orders/{run * 10 + i + 1}")[0] == 200
            status, body = http("GET", f"http://127.0.0.1:{base + 2}/admin/bugs", token="restart")
            assert body["bugs"] == ["n_plus_one"]
        finally:
            assert sut.stop() == 0
