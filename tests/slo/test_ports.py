"""The one place that probes local ports (`slo.ports`), on real sockets."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from slo.ingest.collector import CollectorConfig, start
from slo.ports import check_bindable, free_port, free_port_range, port_open, wait_port


def test_port_open_and_bindable_follow_a_real_listener():
    port = free_port()
    assert not port_open(port)
    check_bindable(port)
    with socket.create_server(("127.0.0.1", port)):
        assert port_open(port)
        with pytest.raises(OSError):
            check_bindable(port)
    assert not port_open(port)


def test_wait_port_waits_for_a_late_listener_and_times_out_on_none():
    port = free_port()
    with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
        wait_port(port, timeout=0.3)
    server: list[socket.socket] = []
    late = threading.Timer(0.3, lambda: server.append(socket.create_server(("127.0.0.1", port))))
    late.start()
    t = time.monotonic()
    try:
        wait_port(port, timeout=10)
        assert time.monotonic() - t >= 0.2
    finally:
        late.join()
        for s in server:
            s.close()


def test_collector_names_a_grpc_port_in_use(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            start(CollectorConfig(store=str(tmp_path / "s"), host="127.0.0.1", port=0,
                                  grpc_port=port))


def test_free_ports_come_from_outside_the_ephemeral_range():
    """A port from the ephemeral range can be taken by any outgoing connection between the
    probe and the server's bind (a gate's SUT then dies with 'Address already in use')."""
    from pathlib import Path

    lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(50)] + [free_port_range(5) for _ in range(20)]
    assert all(not lo <= p <= hi for p in ports), (lo, hi, ports)
    assert len(set(ports)) > 10  # spread out, so parallel runs rarely probe the same one
    base = free_port_range(5)
    for p in range(base, base + 5):
        check_bindable(p)
