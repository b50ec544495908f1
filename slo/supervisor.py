"""Child processes started for a while and stopped for sure: the one supervisor of the project.

The gate, `sut up`, the e2e harness and the benchmarks all start servers that start servers
(a shell, a gunicorn master, its workers). Each child here runs in its own process group
(`start_new_session`), so stopping the group reaches the whole tree, including grandchildren
left behind when their parent has already exited (they keep the group). Stopping is always
the same: SIGTERM the group, wait until the group is empty or a deadline passes, then SIGKILL
whatever is left of it. Readiness is a polled condition with a deadline that gives up as soon
as a child it depends on has died, and either failure names the child and quotes the last lines
of its log.

A bottom-layer utility like `slo.ports`: it imports nothing of `slo` but `slo.errors`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from slo.errors import SloError

#: the signals a supervising process turns into "stop everything and leave"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class SupervisorError(SloError):
    """A child did not start, died, or did not become ready (exit 2 at a CLI edge)."""


ErrorFactory = Callable[[str], BaseException]
#: how a dead child is reported ({name}, {code}); its log tail follows
EXITED = "{name} exited (code {code})"


def group_alive(pgid: int) -> bool:
    """True while any process of group `pgid` that is not a zombie exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # kill(0) succeeds on zombies too (an orphan's parent may be slow to reap it): look closer
    return any(_state(pid) not in ("Z", "X", None) for pid in _group_members(pgid))


def _group_members(pgid: int) -> list[int]:
    try:
        names = os.listdir("/proc")
    except OSError:  # not Linux: trust kill(0)
        return [pgid]
    members = []
    for name in names:
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None and int(stat[2]) == pgid:
                members.append(int(name))
    return members


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name: state, ppid, pgrp, ..."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _state(pid: int) -> str | None:
    stat = _stat(pid)
    return stat[0] if stat else None


class ForkedChild:
    """The `subprocess.Popen` interface `Proc` uses, for a child made by `os.fork`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone, its code unknown
                self.returncode = -1
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.01)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)


class Proc:
    """A child in its own process group, where its output went, and how to stop it.

    `term_leader_only`: SIGTERM only the leader (a gunicorn master stops its workers in
    order, flushing their spans); what lingers is still SIGKILLed as a group.
    """

    def __init__(self, name: str, popen: subprocess.Popen[Any] | ForkedChild, log_path: Path | None = None,
                 term_leader_only: bool = False, tail_lines: int = 15) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path
        self.term_leader_only = term_leader_only
        self.tail_lines = tail_lines
        self.stopped = False  # group seen empty: its id may be reused, signal it no more
        self.terminated = False  # SIGTERM sent (a second one is not sent)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def tail(self, lines: int | None = None) -> str:
        """The last lines of its log ("" when its output was not captured)."""
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-(lines or self.tail_lines):])

    def signal_group(self, sig: int) -> None:
        if self.stopped:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def terminate(self) -> None:
        """SIGTERM (the group, or the leader only), without waiting; once: a second SIGTERM
        can cut short the clean-up the first one started (gunicorn's, `sut up`'s)."""
        if self.terminated:
            return
        self.terminated = True
        if self.term_leader_only:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.send_signal(signal.SIGTERM)
        else:
            self.signal_group(signal.SIGTERM)

    def finish(self, deadline: float) -> None:
        """After `terminate`: wait until the group is empty or `deadline`, then SIGKILL it."""
        if self.stopped:
            return
        while time.monotonic() < deadline:
            self.popen.poll()  # reap the leader, or it counts as a zombie member
            if not group_alive(self.pid):
                break
            time.sleep(0.05)
        # the leader may be gone while its children (gunicorn workers, a grandchild that
        # ignores SIGTERM, orphans re-parented to init) linger in its group
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(2)
        end = time.monotonic() + 2
        while group_alive(self.pid):
            if time.monotonic() > end:
                return
            time.sleep(0.02)
        self.stopped = self.popen.poll() is not None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL what is left of the group after `timeout` seconds."""
        self.terminate()
        self.finish(time.monotonic() + timeout)


class Supervisor:
    """The children of one run: started logged, waited for with deadlines, stopped together.

    `error` builds the exception for a child that died or a condition that timed out (the
    caller's own type: GateError, SutError, AssertionError in the tests).
    """

    def __init__(self, workdir: Path | None = None, error: ErrorFactory = SupervisorError,
                 tail_lines: int = 15) -> None:
        self.workdir = workdir
        self.error = error
        self.tail_lines = tail_lines
        self.procs: list[Proc] = []

    def spawn(self, name: str, cmd: Sequence[str] | str, env: Mapping[str, str] | None = None, *,
              cwd: str | os.PathLike[str] | None = None, shell: bool = False,
              log: Path | None | bool = True, term_leader_only: bool = False,
              preexec_fn: Callable[[], Any] | None = None) -> Proc:
        """Start `cmd` in its own process group.

        `log`: True = `<workdir>/<name>.log`, a path = there, None/False = inherit our output.
        """
        log_path: Path | None
        if log is True:
            if self.workdir is None:
                raise ValueError("log=True needs a workdir")
            log_path = self.workdir / f"{name}.log"
        else:
            log_path = log or None
        fh = None
        try:
            if log_path is not None:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                fh = open(log_path, "wb")  # noqa: SIM115 - the child owns it for its lifetime
            popen = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT if fh else None,
                stdin=subprocess.DEVNULL, env=None if env is None else dict(env),
                start_new_session=True, shell=shell,
                cwd=cwd if cwd is not None else self.workdir, preexec_fn=preexec_fn,
            )
        except OSError as e:
            raise self.error(f"could not start {name} ({cmd}): {e}") from e
        finally:
            if fh is not None:
                fh.close()
        proc = Proc(name, popen, log_path, term_leader_only, self.tail_lines)
        self.procs.append(proc)
        return proc

    def fork(self, name: str, run: Callable[[], int | None], env: Mapping[str, str] | None = None,
             *, term_leader_only: bool = False,
             preexec_fn: Callable[[], Any] | None = None) -> Proc:
        """Run `run()` in a forked child in its own process group (a fork server: the child
        has every module this process imported, without starting an interpreter and
        importing them again). The child's output is ours; it exits with `run`'s return
        value (1 when it raises) as a program ends (threads joined, `atexit` run), never
        returning into the caller's code.

        Fork before starting threads: a thread holding a lock at the fork leaves it held in
        the child. The stop signals are blocked across the fork and reset to their defaults in
        the child before they are unblocked, so a SIGTERM sent to the child before `run`
        installs its own handlers stops it instead of reaching this process's handlers.
        """
        blocked = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            pid = os.fork()
        except OSError as e:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            raise self.error(f"could not start {name} (fork): {e}") from e
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.setsid()
                for sig in blocked:
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.close(devnull)
                if env is not None:
                    os.environ.clear()
                    os.environ.update(env)
                if preexec_fn is not None:
                    preexec_fn()
                result = run()
                code = 0 if result is None else int(result)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # noqa: BLE001 - reported, then the child's exit code
                traceback.print_exc()
            finally:
                _exit_as_interpreter(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        proc = Proc(name, ForkedChild(pid), None, term_leader_only, self.tail_lines)
        self.procs.append(proc)
        return proc

    def first_exited(self, procs: Iterable[Proc] | None = None) -> Proc | None:
        """The first of `procs` (default: all) that is no longer running."""
        return next((p for p in (self.procs if procs is None else procs) if not p.alive()), None)

    def exited_error(self, proc: Proc, message: str = EXITED) -> BaseException:
        """`message` (with `{name}` and `{code}`) and the last lines of the child's log."""
        tail = proc.tail()
        return self.error(message.format(name=proc.name, code=proc.returncode)
                          + (f"; its last lines:\n{tail}" if tail else ""))

    def check_alive(self, procs: Iterable[Proc] | None = None, message: str = EXITED) -> None:
        """Raise the error (with its log tail) if any of `procs` has exited."""
        dead = self.first_exited(procs)
        if dead is not None:
            raise self.exited_error(dead, message)

    def wait_until(self, what: str | Callable[[], str], ok: Callable[[], bool],
                   procs: Iterable[Proc], timeout: float, *, interval: float = 0.1,
                   cancel: Callable[[], bool] = lambda: False) -> None:
        """Poll `ok` until it holds; fail as soon as one of `procs` dies, or after `timeout`.

        `what` names the awaited thing in the errors (a callable: named when failing, e.g.
        the services still pending). `cancel` ends the wait quietly (a stop was requested).
        """
        procs = list(procs)
        deadline = time.monotonic() + timeout
        while not cancel() and not ok():
            dead = self.first_exited(procs)
            if dead is not None:
                raise self.exited_error(dead, EXITED + f" before {what if isinstance(what, str) else what()} was ready")
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs
                                  if p.log_path is not None)
                raise self.error(f"{what if isinstance(what, str) else what()} not ready after {timeout:.0f} s"
                                 + (f"; last lines:\n{tails}" if tails else ""))
            time.sleep(interval)

    def sleep(self, seconds: float, procs: Iterable[Proc] | None = None,
              message: str = EXITED) -> None:
        """Sleep, but raise as soon as one of `procs` (default: all) dies."""
        deadline = time.monotonic() + seconds
        while (now := time.monotonic()) < deadline:
            self.check_alive(procs, message)
            time.sleep(min(0.1, deadline - now))

    def stop(self, procs: Iterable[Proc] | None = None, timeout: float = 10.0) -> None:
        """SIGTERM every group at once, then SIGKILL what lingers after `timeout` in all.

        A second Ctrl-C while this runs is ignored: half a clean-up would leave processes.
        """
        stopping = list(self.procs if procs is None else procs)
        with handle_signals(signal.SIG_IGN, (signal.SIGINT, signal.SIGTERM)):
            for p in stopping:
                p.terminate()
            deadline = time.monotonic() + timeout
            for p in stopping:
                p.finish(max(time.monotonic() + 0.1, deadline))


def _exit_as_interpreter(code: int) -> NoReturn:
    """End a forked child as the end of a program would: join its non-daemon threads, run its
    `atexit` functions (an OpenTelemetry SDK exports its last spans there), flush, exit. Never
    back into the code that forked it (its `finally` blocks belong to the parent)."""
    try:
        threading._shutdown()  # type: ignore[attr-defined] # what Py_FinalizeEx calls first
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - nothing may stop the exit
        with contextlib.suppress(Exception):
            traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


@contextlib.contextmanager
def handle_signals(handler: Callable[[int, Any], Any] | int,
                   signals: Iterable[int] = STOP_SIGNALS) -> Iterator[None]:
    """Install `handler` for `signals` for the duration; outside the main thread, do nothing."""
    previous = {}
    for sig in signals:
        with contextlib.suppress(ValueError):  # not the main thread: leave handlers alone
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, old)
