"""`slo gate` on a system that is not the SUT: the example shop under zero-code instrumentation.

Everything real: the shop's two releases run under `opentelemetry-instrument` (no baggage
processor, no code of this project: its spans carry no run id), a plain Locust file with no
tracing code, the collector, the CLI. A few seconds of load per side.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slo.ports import free_port
from slo.supervisor import Supervisor

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"
BIN = Path(sys.executable).parent
SHORT = ["--duration", "3", "--slice", "1", "--warmup", "1", "--users", "4"]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    for key in [k for k in env if k.startswith(("OTEL_", "SLO_GATE_"))]:
        env.pop(key)
    return env


def _shop(release: int, db: Path, port: str = "{port}") -> str:
    return (f"OTEL_SERVICE_NAME=shop opentelemetry-instrument {sys.executable} "
            f"{SHOP / 'app.py'} --port {port} --release {release} --db {db}")


def _gate(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "slo"), "gate", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _report(d: Path) -> dict:
    return json.loads((d / "slo-report.json").read_text())


def test_a_a_passes_with_flags_over_the_spec(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    r = _gate(["--spec", str(SHOP / "slo.yaml"), "--locustfile", str(SHOP / "locustfile.py"),
               "--baseline-cmd", _shop(1, db), "--candidate-cmd", _shop(1, db),
               "--report-dir", str(tmp_path / "rep"), *SHORT], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    report = _report(tmp_path / "rep")
    assert report["verdict"] == "pass" and report["gate"]["target"] == "commands"
    by = {(x["slo"], x["objective"]): x for x in report["results"]}
    # the shop's spans have no run id: they were joined to the run of their trace
    assert by[("product-list", "db_queries")]["samples"] >= 10
    assert by[("product-list", "db_queries")]["observed"] == 1


def test_a_b_from_the_spec_alone_fails_naming_span_and_statement(tmp_path: Path) -> None:
    """`slo gate` in the example's folder: every setting comes from its slo.yaml `gate:` key."""
    rep = tmp_path / "rep"
    r = _gate(["--report-dir", str(rep), *SHORT], cwd=SHOP)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "FINDING n_plus_one in shop GET /products" in out
    assert "SELECT name FROM categories WHERE id = ?" in out  # as written, literals out
    report = _report(rep)
    (finding,) = [f for f in report["findings"] if f["detector"] == "n_plus_one"]
    assert finding["span"] == "GET /products" and "CATEGORIES" in finding["statement"].upper()
    failed = {x["objective"] for x in report["results"] if x["status"] == "fail"}
    assert "db_queries_regression" in failed
    assert report["gate"]["sides"]["candidate"]["cmd"].endswith("--release 2")


def test_url_mode_against_two_running_deployments(tmp_path: Path) -> None:
    otlp = free_port()
    ports = {1: free_port(), 2: free_port()}
    env = _env()
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp}",
               OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_METRICS_EXPORTER="none",
               OTEL_LOGS_EXPORTER="none", OTEL_BSP_SCHEDULE_DELAY="200")
    # the two deployments are the test's own children: the project's supervisor starts them
    # (process groups, logs under tmp_path) and stops them whatever the gate did
    shops = Supervisor(tmp_path, error=AssertionError)
    for rel, port in ports.items():
        shops.spawn(f"shop-{rel}", _shop(rel, tmp_path / "shop.db", str(port)), env, shell=True)
    try:
        r = _gate(["--spec", str(SHOP / "slo.yaml"), "--locustfile", str(SHOP / "locustfile.py"),
                   "--baseline-url", f"http://127.0.0.1:{ports[1]}",
                   "--candidate-url", f"http://127.0.0.1:{ports[2]}", "--otlp-port", str(otlp),
                   "--report-dir", str(tmp_path / "rep"), *SHORT], cwd=tmp_path)
    finally:
        shops.stop()
    # only the candidate runs the N+1: each slice's requests went to its own side's host
    assert r.returncode == 1, r.stdout + r.stderr
    report = _report(tmp_path / "rep")
    assert report["gate"]["target"] == "urls"
    by = {(x["slo"], x["objective"]): x for x in report["results"]}
    assert by[("product-list", "db_queries_regression")]["baseline"] == 1
    assert by[("product-list", "db_queries_regression")]["observed"] == 21


def test_a_command_that_never_gets_healthy_is_exit_2_with_its_output(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    r = _gate(["--spec", str(SHOP / "slo.yaml"), "--locustfile", str(SHOP / "locustfile.py"),
               "--baseline-cmd", _shop(1, db), "--start-timeout", "3",
               "--candidate-cmd", "echo candidate is thinking; sleep 60", *SHORT], cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "the candidate" in r.stderr and "not ready after 3 s" in r.stderr
    assert "candidate is thinking" in r.stderr
    r = _gate(["--spec", str(SHOP / "slo.yaml"), "--locustfile", str(SHOP / "locustfile.py"),
               "--baseline-cmd", _shop(1, db),
               "--candidate-cmd", "echo no such build >&2; exit 3", *SHORT], cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "candidate exited (code 3)" in r.stderr and "no such build" in r.stderr


def test_a_command_that_dies_mid_gate_is_exit_2(tmp_path: Path) -> None:
    """The candidate dies once the slices run (on our signal, not on a timer: on a busy
    machine a timer can fire while the gate is still starting)."""
    db, die = tmp_path / "shop.db", tmp_path / "die"
    dies = (f"{_shop(2, db)} & app=$!; while [ ! -e {die} ]; do sleep 0.1; done; "
            "kill $app; exit 3")
    proc = subprocess.Popen(
        [str(BIN / "slo"), "gate", "--spec", str(SHOP / "slo.yaml"),
         "--locustfile", str(SHOP / "locustfile.py"), "--baseline-cmd", _shop(1, db),
         "--candidate-cmd", dies, "--duration", "20", "--slice", "1", "--warmup", "1",
         "--users", "2"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = ""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out += line
            if "phase, slice" in line:
                die.touch()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert die.exists(), out  # the slices did start
    assert proc.returncode == 2, out
    assert "candidate exited during the gate" in out


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        kids = [c for c, p in parents.items() if p == pid]
        found.update(kids)
        todo.extend(kids)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_leave_no_process(tmp_path: Path, sig: signal.Signals) -> None:
    db = tmp_path / "shop.db"
    gate = subprocess.Popen(
        [str(BIN / "slo"), "gate", "--spec", str(SHOP / "slo.yaml"),
         "--locustfile", str(SHOP / "locustfile.py"), "--baseline-cmd", _shop(1, db),
         "--candidate-cmd", _shop(2, db), "--duration", "60", "--users", "2"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    try:
        assert gate.stdout is not None
        seen = []
        for line in gate.stdout:
            seen.append(line)
            if "phase, slice" in line:
                break
        else:
            pytest.fail("the gate never started its slices:\n" + "".join(seen))
        tree = _descendants(gate.pid)
        assert len(tree) >= 4  # collector, two deployments (shell + server), locust
        gate.send_signal(sig)
        rest = gate.communicate(timeout=60)[0]
    finally:
        if gate.poll() is None:
            os.killpg(gate.pid, signal.SIGKILL)
    assert gate.returncode == 2, "".join(seen) + rest
    assert f"interrupted by {sig.name}" in rest
    deadline = time.monotonic() + 5
    while (left := [p for p in tree if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes left behind: {left}"
