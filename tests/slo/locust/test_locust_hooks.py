"""The plugin's request hook, in a real Locust process: a Locust file with no tracing code
gets `traceparent` and `baggage` on every request of HttpUser and FastHttpUser, and a slice
file naming a host sends the requests for `--host` there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from slo.slicefile import slice_text

ROOT = Path(__file__).resolve().parents[3]
LOCUSTFILE = '''
from locust import HttpUser, constant, task
from locust.contrib.fasthttp import FastHttpUser


class Plain(HttpUser):
    wait_time = constant(0.05)

    @task
    def get(self):
        self.client.get("/plain?x=1")


class Fast(FastHttpUser):
    wait_time = constant(0.05)

    @task
    def get(self):
        self.client.get("/fast")
'''
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


def _server() -> tuple[ThreadingHTTPServer, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, seen


def test_both_clients_carry_context_and_follow_the_slice_host(tmp_path: Path) -> None:
    (tmp_path / "plainfile.py").write_text(LOCUSTFILE)
    given, given_seen = _server()   # Locust's --host: must get nothing
    side, side_seen = _server()     # the slice's host
    try:
        slice_file = tmp_path / "slice"
        slice_file.write_text(slice_text("slice-7", f"http://127.0.0.1:{side.server_port}"))
        plugin = ROOT / "slo" / "locust" / "slo_plugin.py"
        r = subprocess.run(
            [sys.executable, "-m", "locust", "-f", f"{tmp_path / 'plainfile.py'},{plugin}",
             "--headless", "-u", "2", "-r", "2", "-t", "2s", "--only-summary", "--json",
             "--host", f"http://127.0.0.1:{given.server_port}", "--slo-no-check",
             "--slo-run-id-file", str(slice_file), "--slo-otlp-endpoint", "none",
             "--slo-store", str(tmp_path / "store")],
            cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
            text=True, timeout=120,
        )
    finally:
        given.shutdown()
        side.shutdown()
    assert r.returncode == 0, r.stderr[-3000:]
    assert not given_seen
    paths = {s["path"] for s in side_seen}
    assert paths == {"/plain?x=1", "/fast"}, paths
    for s in side_seen:
        assert TRACEPARENT.match(s["traceparent"]) and s["baggage"] == "slo.run_id=slice-7", s
    # Locust's statistics keep the path as the request name, not the side's URL
    names = {row["name"] for row in json.loads(r.stdout)}
    assert names == {"/plain?x=1", "/fast"}, names
