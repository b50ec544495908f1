"""What the gate needs around its child processes: its errors, probes, signals.

Starting, waiting for and stopping the children is `slo.supervisor` (one process group
each, stopped on success, failure, Ctrl-C and SIGTERM); `Proc` is re-exported from there.
"""

from __future__ import annotations

import contextlib
import http.client
import signal
import sys
import urllib.error
import urllib.request
from typing import Any

from slo.errors import SloError
from slo.ports import port_open as port_open  # re-exported: slo.gate.core imports it here
from slo.supervisor import Proc, handle_signals

__all__ = ["GateError", "Interrupted", "Proc", "http_ok", "http_status", "install_signal_handlers",
           "port_open", "python_cmd", "restore_signal_handlers"]


class GateError(SloError):
    """The gate could not run (a process did not start, a port did not open): exit 2."""


class Interrupted(GateError):
    """SIGTERM/SIGINT arrived: stop everything and leave."""


def http_ok(url: str) -> bool:
    """A 200 from `url` (the SUT's /healthz)."""
    return http_status(url) == 200


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status `url` answers with, or None when nothing (HTTP) answers.

    Not an HTTP answer counts as no answer: while nothing listens on a port in the ephemeral
    range, a probe's own socket can connect to itself (TCP simultaneous open) and read back its
    request ("BadStatusLine: GET /healthz HTTP/1.1"); the next probe tries again.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return None


def python_cmd(module_main: str) -> list[str]:
    """Run `<module>:main` with this interpreter (no reliance on console scripts on PATH)."""
    module, func = module_main.split(":")
    # -P: the working directory must not shadow packages (a data dir named sut/, say)
    return [sys.executable, "-P", "-c", f"import sys; from {module} import {func}; sys.exit({func}())"]


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}; stopped everything")


def install_signal_handlers() -> contextlib.ExitStack:
    """SIGTERM, SIGINT and SIGHUP raise Interrupted until `restore_signal_handlers`."""
    stack = contextlib.ExitStack()
    stack.enter_context(handle_signals(_raise_interrupted))
    return stack


def restore_signal_handlers(previous: contextlib.ExitStack) -> None:
    previous.close()
