"""The app factory: `create_app("order-service")` builds one service, ready for gunicorn
(`sut.app:create_app("order-service")`, called in each worker after the fork) or for tests
(which pass their own settings and tracer provider)."""

from __future__ import annotations

import importlib
from typing import Any

from flask import Flask

from sut import SERVICES, telemetry
from sut.bugs import BugState
from sut.config import Settings
from sut.db import Database
from sut.web import Service, make_flask_app

MODULES = {name: "sut.services." + name.split("-")[0] for name in SERVICES}


def create_app(service: str, settings: Settings | None = None, tracer_provider: Any = None) -> Flask:
    """Build `service` (one of sut.SERVICES). Without a tracer provider, one exporting OTLP
    is made from the OTEL_* environment (the gunicorn case)."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    settings = settings or Settings.from_env()
    if tracer_provider is None:
        tracer_provider = telemetry.make_tracer_provider(service)
        from opentelemetry import trace

        trace.set_tracer_provider(tracer_provider)
    svc = Service(
        name=service,
        settings=settings,
        db=Database(settings.db_url, tracer_provider),
        bugs=BugState(settings.bugs_path),
        tracer=tracer_provider.get_tracer(telemetry.TRACER_NAME),
        tracer_provider=tracer_provider,
    )
    app = make_flask_app(svc)
    importlib.import_module(MODULES[service]).register(app, svc)
    return app
