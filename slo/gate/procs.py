"""Child processes of the gate: each in its own process group, logged, stopped for sure.

A deployment command may start a tree (a shell, a server, its workers): stopping the group
stops all of it, on success, failure, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slo.errors import SloError
from slo.ports import port_open as port_open  # re-exported: slo.gate.core imports it here


class GateError(SloError):
    """The gate could not run (a process did not start, a port did not open): exit 2."""


class Interrupted(GateError):
    """SIGTERM/SIGINT arrived: stop everything and leave."""


def http_ok(url: str) -> bool:
    """A 200 from `url` (the SUT's /healthz)."""
    return http_status(url) == 200


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status `url` answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError, ValueError):
        return None


@dataclass
class Proc:
    """A child in its own process group, its log file, and how to stop it."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def terminate(self) -> None:
        """SIGTERM the whole group, without waiting."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM the whole group, then SIGKILL what is left after `timeout`."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # the leader may be gone while its children (gunicorn workers) linger
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(2)


def python_cmd(module_main: str) -> list[str]:
    """Run `<module>:main` with this interpreter (no reliance on console scripts on PATH)."""
    module, func = module_main.split(":")
    # -P: the working directory must not shadow packages (a data dir named sut/, say)
    return [sys.executable, "-P", "-c", f"import sys; from {module} import {func}; sys.exit({func}())"]


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}; stopped everything")


def install_signal_handlers() -> dict[int, Any]:
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread: leave handlers alone
            previous[sig] = signal.signal(sig, _raise_interrupted)
    return previous


def restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(sig, handler)
