"""Shared fixtures: one seeded SQLite database per test session, and the five services
running in this process on real sockets with spans captured by an InMemorySpanExporter."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sut_helpers import TOKEN, free_port, http

import sut.telemetry  # sets OTEL_SEMCONV_STABILITY_OPT_IN before any instrumentation
from sut import SERVICES, seed
from sut.app import create_app
from sut.config import Settings


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded SQLite file, made once per session (copy it for a private data dir)."""
    path = tmp_path_factory.mktemp("sutdb") / "sut.db"
    seed.ensure_seeded(str(path))
    return path


@dataclass
class Stack:
    urls: dict[str, str]
    exporter: Any
    settings: Settings
    apps: dict[str, Any]

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def clear(self) -> None:
        self.exporter.clear()

    def svc(self, name: str) -> Any:
        return self.apps[name].extensions["sut.service"]

    def set_bugs(self, bugs: list[str]) -> None:
        status, body = http("POST", self.urls["inventory-service"] + "/admin/bugs", {"bugs": bugs},
                            TOKEN)
        assert status == 200, body
        for name in SERVICES:  # every app re-reads the state file (what workers do within 100 ms)
            self.svc(name).bugs.current(fresh=True)

    def call(self, service: str, path: str, **kw: Any) -> tuple[int, dict, list[Any]]:
        """One request; returns status, body and the spans of its trace (waits for them)."""
        self.clear()
        status, body = http("GET", self.urls[service] + path, **kw)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            spans = self.spans()
            roots = [s for s in spans if s.parent is None or s.parent.is_remote]
            if any(s.resource.attributes["service.name"] == service for s in roots):
                time.sleep(0.05)  # late siblings
                return status, body, self.spans()
            time.sleep(0.02)
        raise AssertionError(f"no server span for {service}{path}")


@pytest.fixture(scope="session")
def stack(seeded_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from werkzeug.serving import make_server

    exporter = InMemorySpanExporter()
    ports = {name: free_port() for name in SERVICES}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    settings = Settings(data_dir=tmp_path_factory.mktemp("sutstate"), db_url=str(seeded_db),
                        admin_token=TOKEN, urls=dict(urls))
    servers, apps = [], {}
    for name in SERVICES:
        provider = sut.telemetry.make_tracer_provider(name, export=False)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        apps[name] = create_app(name, settings, tracer_provider=provider)
        server = make_server("127.0.0.1", ports[name], apps[name], threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    st = Stack(urls=urls, exporter=exporter, settings=settings, apps=apps)
    yield st
    st.set_bugs([])
    for server in servers:
        server.shutdown()


@pytest.fixture
def clean_stack(stack: Stack) -> Iterator[Stack]:
    """The in-process stack with no bug on, and none left on afterwards."""
    stack.set_bugs([])
    yield stack
    stack.set_bugs([])
