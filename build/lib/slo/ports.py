"""Free local ports for the processes the gate, the tests and the benchmarks start.

The SUT needs five consecutive ports (one base port, the services at fixed offsets), which no
single `bind(0)` gives; this probes for a run of them. There is a window between probing and
the real bind, so callers that start servers must still report a port in use clearly.
"""

from __future__ import annotations

import socket

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
