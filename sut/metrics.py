"""Request metrics for Prometheus at /metrics, one number per service across gunicorn workers.

Pull metrics live in a process; with several gunicorn workers a scrape reaches one of them and
sees only its share. prometheus_client's multiprocess mode is the library's answer: every
worker writes its samples to memory-mapped files in `PROMETHEUS_MULTIPROC_DIR`, and /metrics
(whichever worker answers) sums the files of all of them. `sut up` and `sut serve` give each
service its own, emptied directory (`multiprocess_env`); without one (tests running the apps
in one process) each app keeps its own registry.

The metric is the OTel HTTP semantic convention's `http.server.request.duration` in seconds,
as a histogram with method, route and status code, plus the service's name.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask
    from opentelemetry.metrics import MeterProvider

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LABELS = ("service_name", "http_request_method", "http_route", "http_response_status_code")
UNTRACKED = frozenset({"/metrics", "/healthz"})


def multiprocess_env(data_dir: str | os.PathLike[str], service: str) -> dict[str, str]:
    """The environment for one service's gunicorn: a fresh multiprocess metrics directory
    (files left by an earlier run would be counted again)."""
    path = Path(data_dir) / "metrics" / service
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return {MULTIPROC_ENV: str(path)}


def _multiproc_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()) or None


def init_metrics(app: Flask, service_name: str) -> MeterProvider:
    """Add GET /metrics to `app` and time every request; returns the MeterProvider for the Flask
    instrumentation: a no-op one, since Prometheus is served from prometheus_client here.

    An SDK MeterProvider without readers kept nothing, yet the instrumentation still recorded
    into it (two histograms and a counter per request, attributes validated each time): CPU
    that OTEL_SDK_DISABLED=true did not spend, so it counted as tracing overhead (issue 12).

    prometheus_client is imported here, in the process that serves, never earlier: it picks
    its multiprocess mode from PROMETHEUS_MULTIPROC_DIR once, when imported, and `sut up`
    forks every service from one process (`sut.runner.preload_services`) that has no such
    directory itself; a service forked with the module already imported would count alone."""
    from flask import Response, g, request
    from opentelemetry.metrics import NoOpMeterProvider
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

    multiproc = _multiproc_dir()
    registry = CollectorRegistry(auto_describe=True)
    duration = Histogram(
        "http_server_request_duration_seconds", "Duration of HTTP server requests.", LABELS,
        registry=None if multiproc else registry)

    @app.before_request
    def start_timer() -> None:
        g.sut_metrics_t0 = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        t0 = g.pop("sut_metrics_t0", None)
        rule = request.url_rule.rule if request.url_rule is not None else ""
        if t0 is not None and rule not in UNTRACKED:
            duration.labels(service_name, request.method, rule,
                            str(response.status_code)).observe(time.perf_counter() - t0)
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        if multiproc:
            from prometheus_client import multiprocess

            scrape = CollectorRegistry()
            multiprocess.MultiProcessCollector(scrape, path=multiproc)
            return Response(generate_latest(scrape), mimetype=CONTENT_TYPE_LATEST)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    provider = NoOpMeterProvider()
    app.extensions["sut.meter_provider"] = provider
    return provider
