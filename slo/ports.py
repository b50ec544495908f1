"""Local ports for the processes the gate, the tests and the benchmarks start: the one place
that probes them (free to bind? something listening?).

The SUT needs five consecutive ports (one base port, the services at fixed offsets), which no
single `bind(0)` gives; this probes for a run of them. There is a window between probing and
the real bind, so callers that start servers must still report a port in use clearly
(`check_bindable` before starting says it in one line).
"""

from __future__ import annotations

import random
import socket
import time

from slo.errors import SloError

_RANDOM = random.SystemRandom()


def _outside_ephemeral(n: int) -> tuple[int, int] | None:
    """[low, high) of ports the kernel never picks for outgoing connections, with room for n.

    A port found by `bind(0)` comes from the ephemeral range, the very range every outgoing
    connection on the machine draws from: between the probe and the server's bind, a client
    socket (another test's, a browser's) can take it. Ports outside that range are only ever
    taken by listeners, which the probe sees.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            lo, hi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        lo, hi = 49152, 65535  # IANA's dynamic range (BSD, macOS, Windows)
    if lo - 10000 >= 4 * n:
        return 10000, lo - n
    if 65535 - hi >= 4 * n:
        return hi + 1, 65536 - n
    return None


def _candidate(n: int, host: str, span: tuple[int, int] | None) -> int:
    if span is None:
        with socket.socket() as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]  # (getsockname is typed Any: its shape is per family)
            return port
    return _RANDOM.randrange(*span)


def _bindable_run(base: int, n: int, host: str) -> bool:
    socks: list[socket.socket] = []
    try:
        for p in range(base, base + n):
            s = socket.socket()
            socks.append(s)
            s.bind((host, p))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now, outside the ephemeral range where one exists."""
    return free_port_range(1, host=host)


def free_port_range(n: int, attempts: int = 200, host: str = "127.0.0.1") -> int:
    """A base port with `n` consecutive free ports after it (the SUT's five services)."""
    span = _outside_ephemeral(n)
    for _ in range(attempts):
        base = _candidate(n, host, span)
        if base + n <= 65536 and _bindable_run(base, n, host):
            return base
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
