"""What every service shares: JSON errors, /healthz, the bearer-protected /admin/bugs, and the
OTel wiring of the Flask app. Service modules only add their own routes."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from flask import Flask, jsonify, request
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from werkzeug.exceptions import HTTPException

from sut.bugs import BUGS, BugState, UnknownBug, bug_name
from sut.config import Settings
from sut.db import Database


class ApiError(Exception):
    """An error answer with its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Service:
    """The per-app context handed to a service module's `register`."""

    name: str
    settings: Settings
    db: Database
    bugs: BugState
    tracer: trace.Tracer
    tracer_provider: Any
    cache: Any = None  # inventory-service's stock cache


def int_list(name: str, *, required: bool = True, limit: int = 100) -> list[int]:
    """?name=1,2,3 -> [1, 2, 3]; ApiError 400 naming the parameter otherwise."""
    raw = request.args.get(name, "")
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        if required:
            raise ApiError(400, f"query parameter {name!r} is required: comma-separated ids, e.g. {name}=1,2,3")
        return []
    try:
        ids = [int(p) for p in parts]
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be comma-separated integers, got {raw!r}") from None
    if len(ids) > limit:
        raise ApiError(400, f"query parameter {name!r} takes at most {limit} ids, got {len(ids)}")
    return list(dict.fromkeys(ids))


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"query parameter {name!r} must be between {low} and {high}, got {value}")
    return value


def mark_error(exc: BaseException | None, message: str) -> None:
    """Error status (and the exception, if any) on the current span."""
    span = trace.get_current_span()
    if exc is not None:
        span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, message))


def _install_errors(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(e: ApiError):  # type: ignore[no-untyped-def]
        if e.status >= 500:
            mark_error(e, e.message)
        return jsonify(error=e.message), e.status

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):  # type: ignore[no-untyped-def]
        return jsonify(error=f"{e.name}: {e.description}"), e.code or 500

    @app.errorhandler(Exception)
    def unexpected(e: Exception):  # type: ignore[no-untyped-def]
        mark_error(e, f"{type(e).__name__}: {e}")
        app.logger.exception("unhandled error")
        return jsonify(error=f"internal error: {type(e).__name__}: {e}"), 500


def _install_admin(app: Flask, svc: Service) -> None:
    def authorize() -> None:
        token = svc.settings.token()
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token:
            raise ApiError(401, "admin API disabled: no SUT_ADMIN_TOKEN configured")
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "missing or wrong admin token: send 'Authorization: Bearer $SUT_ADMIN_TOKEN'")

    def answer() -> Any:
        return jsonify(service=svc.name, bugs=sorted(svc.bugs.current(fresh=True), key=lambda b: BUGS.index(bug_name(b))),
                       available=list(BUGS))

    @app.get("/admin/bugs")
    def list_bugs():  # type: ignore[no-untyped-def]
        authorize()
        return answer()

    @app.post("/admin/bugs")
    def switch_bugs():  # type: ignore[no-untyped-def]
        authorize()
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, 'body must be a JSON object like {"enable": ["n_plus_one"], "disable": []} or {"bugs": [...]}')
        unknown_keys = set(body) - {"enable", "disable", "bugs"}
        if unknown_keys:
            raise ApiError(400, f"unknown field(s) {sorted(unknown_keys)}: use enable, disable or bugs")
        lists = {}
        for key in ("enable", "disable", "bugs"):
            value = body.get(key)
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ApiError(400, f"field {key!r} must be a list of bug names")
            lists[key] = value
        try:
            svc.bugs.update(enable=lists.get("enable", []), disable=lists.get("disable", []),
                            replace=lists.get("bugs"))
        except UnknownBug as e:
            raise ApiError(400, str(e)) from None
        return answer()


def make_flask_app(svc: Service) -> Flask:
    """A Flask app with errors, health, admin, metrics and tracing; the service adds routes."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    from sut.metrics import init_metrics

    app = Flask(svc.name)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["sut.service"] = svc
    _install_errors(app)
    _install_admin(app, svc)

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return jsonify(status="ok", service=svc.name)

    meter_provider = init_metrics(app, svc.name)
    FlaskInstrumentor().instrument_app(
        app, tracer_provider=svc.tracer_provider, meter_provider=meter_provider,
        excluded_urls="/healthz,/metrics")
    return app
