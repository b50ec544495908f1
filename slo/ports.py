"""Local ports for the processes the gate, the tests and the benchmarks start: the one place
that probes them (free to bind? something listening?).

The SUT needs five consecutive ports (one base port, the services at fixed offsets), which no
single `bind(0)` gives; this probes for a run of them. There is a window between probing and
the real bind, so callers that start servers must still report a port in use clearly
(`check_bindable` before starting says it in one line).
"""

from __future__ import annotations

import socket
import time

from slo.errors import SloError


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_range(n: int, attempts: int = 200, host: str = "127.0.0.1") -> int:
    """A base port with `n` consecutive free ports after it (the SUT's five services)."""
    for _ in range(attempts):
        base = free_port(host)
        if base + n > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind((host, p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SloError(f"no {n} consecutive free ports found on {host}: free some ports and retry")


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    """Poll until something accepts connections on host:port; OSError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not port_open(port, host, timeout=1.0):
        if time.monotonic() > deadline:
            raise OSError(f"nothing accepts connections on {host}:{port} after {timeout:g} s")
        time.sleep(0.05)


def check_bindable(port: int, host: str = "127.0.0.1") -> None:
    """OSError (with the OS's reason) unless a server could bind host:port now.

    SO_REUSEADDR as servers set it: connections left in TIME_WAIT by a previous run do not
    count, a listener does.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
