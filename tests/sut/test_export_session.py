"""The exporter's session reads proxy settings once, at start, and means the same as asking the
environment on every export (what a default requests session does)."""

from __future__ import annotations

import pytest

from sut.telemetry import export_session

ENDPOINT = "http://collector.example:4318/v1/traces"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                 "no_proxy", "NO_PROXY", "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
                 "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent/netrc")


def test_session_stops_asking_the_environment() -> None:
    session = export_session(ENDPOINT)
    assert session is not None and session.trust_env is False and not session.proxies


def test_proxy_in_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    session = export_session(ENDPOINT)
    assert session is not None and session.proxies.get("http") == "http://proxy.example:3128"


def test_no_proxy_for_the_endpoint_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "collector.example")
    session = export_session(ENDPOINT)
    assert session is not None and not session.proxies


def test_https_and_credential_providers_keep_the_exporters_session(monkeypatch: pytest.MonkeyPatch) -> None:
    assert export_session("https://collector.example:4318/v1/traces") is None
    monkeypatch.setenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER", "mine")
    assert export_session(ENDPOINT) is None
