"""Helpers shared by the SUT tests: free ports, plain-urllib HTTP calls, span queries."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from slo.ports import free_port, free_port_range  # noqa: F401 (free_port: re-exported)

TOKEN = "test-token"


def free_base_port(count: int = 5) -> int:
    """A base port with `count` consecutive free ports after it."""
    return free_port_range(count)


def http(method: str, url: str, body: object | None = None, token: str | None = None,
         raw: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, dict]:
    """A plain urllib call (the requests library is instrumented in the test process)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        payload = e.read()
        try:
            return e.code, json.loads(payload)
        except ValueError:
            return e.code, {"raw": payload.decode(errors="replace")}


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


class SutProcess:
    """`sut up` as a real process; waits for its "ready" line; stops it with SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str], timeout: float = 120) -> None:
        import os
        import subprocess
        import sys
        import threading
        import time
        from pathlib import Path

        exe = str(Path(sys.executable).with_name("sut"))
        self.proc = subprocess.Popen([exe, "up", *args], env={**os.environ, **env},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.ready = threading.Event()

        def pump(stream, sink, ready: bool) -> None:  # type: ignore[no-untyped-def]
            for line in stream:
                sink.append(line.rstrip("\n"))
                if ready and "ready" in line:
                    self.ready.set()

        threading.Thread(target=pump, args=(self.proc.stdout, self.lines, True), daemon=True).start()
        threading.Thread(target=pump, args=(self.proc.stderr, self.errors, False), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("sut up did not get ready:\n" + "\n".join(self.lines + self.errors[-30:]))

    def stop(self, timeout: float = 30) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def run_sut(args: list[str], env: dict[str, str] | None = None, timeout: float = 60):  # type: ignore[no-untyped-def]
    """Run `sut ARGS` to completion; returns the CompletedProcess."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).with_name("sut"))
    return subprocess.run([exe, *args], env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
