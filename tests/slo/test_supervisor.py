"""The process supervisor with real child processes: groups stopped for sure, readiness
failures that name the child and quote its log."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from slo.errors import SloError
from slo.supervisor import Supervisor, SupervisorError, handle_signals

#: a grandchild that ignores SIGTERM and writes its pid where the test can read it
GRANDCHILD = (
    "import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid())); "
    "os.replace(sys.argv[1] + '.tmp', sys.argv[1]); time.sleep(60)"
)


def _child(pid_file: Path, leader_exits: bool) -> list[str]:
    """A child that starts GRANDCHILD, then either waits or exits at once (orphaning it)."""
    rest = "" if leader_exits else "; time.sleep(60)"
    code = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}, "
            f"{str(pid_file)!r}]){rest}")
    return [sys.executable, "-c", code]


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (nothing runs any more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


@pytest.mark.parametrize("leader_exits", [False, True], ids=["leader-running", "orphaned"])
def test_stop_kills_a_grandchild_that_ignores_sigterm(tmp_path: Path, leader_exits: bool) -> None:
    sup = Supervisor(tmp_path)
    pid_file = tmp_path / "grandchild.pid"
    proc = sup.spawn("tree", _child(pid_file, leader_exits))
    sup.wait_until("the grandchild", pid_file.exists, [] if leader_exits else [proc], 20)
    grandchild = int(pid_file.read_text())
    assert not _gone(grandchild)
    t0 = time.monotonic()
    sup.stop(timeout=0.5)
    assert _gone(grandchild), "a grandchild that ignores SIGTERM outlived stop()"
    assert not proc.alive()
    assert time.monotonic() - t0 < 5


def test_sigterm_to_the_leader_only_still_kills_what_lingers(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    pid_file = tmp_path / "grandchild.pid"
    proc = sup.spawn("tree", _child(pid_file, False), term_leader_only=True)
    sup.wait_until("the grandchild", pid_file.exists, [proc], 20)
    grandchild = int(pid_file.read_text())
    proc.stop(timeout=0.3)
    assert _gone(grandchild) and not proc.alive()


def test_a_child_that_exits_before_ready_fails_with_its_log_tail(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    proc = sup.spawn("server", [sys.executable, "-c",
                                "print('listening soon'); print('no such build: v9'); raise SystemExit(3)"])
    t0 = time.monotonic()
    with pytest.raises(SupervisorError) as err:
        sup.wait_until("the server", lambda: False, [proc], timeout=30)
    assert time.monotonic() - t0 < 10, "a dead child must end the wait at once, not at the deadline"
    msg = str(err.value)
    assert msg.startswith("server exited (code 3) before the server was ready; its last lines:")
    assert "no such build: v9" in msg
    assert isinstance(err.value, SloError)  # exit 2 at the CLI edge


def test_a_readiness_timeout_quotes_the_log_tail(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    proc = sup.spawn("slow", [sys.executable, "-u", "-c",
                              "import time; print('still thinking', flush=True); time.sleep(60)"])
    sup.wait_until("its first line", lambda: "thinking" in proc.tail(), [proc], 20)
    with pytest.raises(SupervisorError) as err:
        sup.wait_until("the slow one", lambda: False, [proc], timeout=0.5)
    assert "the slow one not ready after 0 s; last lines:\n--- slow\nstill thinking" in str(err.value)
    sup.stop(timeout=1)
    assert not proc.alive()


def test_errors_are_the_callers_type_and_a_missing_program_is_one(tmp_path: Path) -> None:
    class Mine(Exception):
        pass

    sup = Supervisor(tmp_path, error=Mine)
    with pytest.raises(Mine, match=r"could not start nothing \(.*no-such-program"):
        sup.spawn("nothing", [str(tmp_path / "no-such-program")])
    assert sup.procs == []


def test_sleep_ends_when_a_child_dies(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    sup.spawn("short", [sys.executable, "-c", "print('bye')"])
    with pytest.raises(SupervisorError, match="short died \\(code 0\\); its last lines:\nbye"):
        sup.sleep(30, message="{name} died (code {code})")


def test_signals_are_handled_for_the_duration_only() -> None:
    seen: list[int] = []
    before = signal.getsignal(signal.SIGHUP)
    with handle_signals(lambda signum, _frame: seen.append(signum), (signal.SIGHUP,)):
        signal.raise_signal(signal.SIGHUP)
    assert seen == [signal.SIGHUP]
    assert signal.getsignal(signal.SIGHUP) == before


def test_a_forked_child_runs_in_its_own_group_and_exits_as_a_program(tmp_path: Path) -> None:
    """`fork` runs a function in a child: its return value is the exit code, what it registered
    with atexit runs (an OTel SDK flushes there), and it never returns into our code."""
    import atexit
    import os

    marker = tmp_path / "atexit-ran"
    after = tmp_path / "returned-into-the-caller"

    def run() -> int:
        assert os.getpgid(0) == os.getpid()  # its own process group (stopped as one)
        assert os.environ["FORKED"] == "yes"
        atexit.register(lambda: marker.write_text(str(os.getpid())))
        return 3

    sup = Supervisor(tmp_path)
    parent = os.getpid()
    proc = sup.fork("child", run, {**os.environ, "FORKED": "yes"})
    if os.getpid() != parent:  # pragma: no cover - only if fork returned in the child
        after.write_text("")
        os._exit(0)
    assert proc.wait(20) == 3
    assert marker.read_text() == str(proc.pid)
    assert not after.exists()
    assert "FORKED" not in os.environ  # the environment was the child's only


def test_a_forked_child_that_raises_exits_1(tmp_path: Path) -> None:
    def run() -> int:
        raise RuntimeError("boom")

    assert Supervisor(tmp_path).fork("child", run).wait(20) == 1


def test_sigterm_stops_a_forked_child_before_it_set_its_own_handlers(tmp_path: Path) -> None:
    """Our SIGTERM handler is not the child's: a stop sent while the child is still starting
    (a gunicorn master before its arbiter set its handlers) ends it instead of calling our
    handler in the child, which would leave it running until SIGKILL."""
    started = tmp_path / "started"

    def run() -> int:
        started.write_text("")
        time.sleep(30)
        return 0

    seen: list[int] = []
    sup = Supervisor(tmp_path)
    with handle_signals(lambda signum, _frame: seen.append(signum), (signal.SIGTERM,)):
        proc = sup.fork("child", run)
        sup.wait_until("the child", started.exists, [proc], 20)
        t0 = time.monotonic()
        proc.terminate()
        assert proc.wait(10) == -signal.SIGTERM
        assert time.monotonic() - t0 < 5
    assert seen == []
