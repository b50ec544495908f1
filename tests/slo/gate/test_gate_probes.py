"""The gate's readiness probe: only an HTTP answer counts as an answer."""

from __future__ import annotations

import socket
import threading

from slo.gate.procs import http_status


def test_a_reply_that_is_not_http_is_no_answer_yet() -> None:
    """While nothing listens on an ephemeral port, a probe can connect to itself and read back
    its own request line; that must read as "not ready", not crash the gate."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def echo() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.sendall(conn.recv(4096))  # what a self-connected socket sees: its own request

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    try:
        assert http_status(f"http://127.0.0.1:{port}/healthz", timeout=5) is None
    finally:
        t.join(5)
        srv.close()
