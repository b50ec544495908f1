"""Request metrics for Prometheus at /metrics: the OTel metrics SDK with its Prometheus exporter.

Each app gets its own prometheus registry (several apps may share a test process). With several
gunicorn workers each worker answers for itself, the usual limit of pull metrics per process.
"""

from __future__ import annotations

from flask import Flask, Response
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def init_metrics(app: Flask, service_name: str) -> MeterProvider:
    """Add GET /metrics to `app`; returns the MeterProvider to hand to the Flask instrumentation
    (which records http.server.* request durations into it)."""
    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": service_name}))

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    app.extensions["sut.meter_provider"] = provider
    return provider
