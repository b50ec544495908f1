"""The SLO tab of Locust's web UI: live objectives, bug switches, worst-trace waterfalls.

Two views of the same live state:
- Locust's own UI gets an **SLO** tab (Locust's "extended tabs": a table pushed with each
  `/stats/requests` poll) and a floating "SLO dashboard" link;
- `/slo/` is a page of our own (Locust's extended tabs render plain text only): each
  objective's live value against its budget and status, a switch per SUT bug, and for each
  failing objective a link to its worst trace, rendered as a waterfall by the report renderer.

A background greenlet evaluates the spec over the last `--slo-live-window` seconds of the
current run every `INTERVAL` seconds, in gevent's thread pool (reading Parquet and checking
is CPU work; the users and the UI keep running meanwhile).
"""

from __future__ import annotations

import html
import json
import logging
import time
from pathlib import Path
from typing import Any

import gevent
from flask import Blueprint, Response, jsonify, request

from slo.locust import live

log = logging.getLogger("slo")

try:
    from sut.bugs import BUGS as ALL_BUGS
except ImportError:  # pragma: no cover - the SUT ships alongside
    ALL_BUGS = ()

INTERVAL = 3.0
MAX_TRACES = 200
PAGE = Path(__file__).with_name("slo_tab.html")


class LiveState:
    """What the tab shows; written by the evaluator greenlet, read by the routes."""

    def __init__(self) -> None:
        self.run_id = ""
        self.rows: list[dict[str, Any]] = []
        self.findings: list[dict[str, Any]] = []
        self.verdict = ""
        self.message = "no test running yet"
        self.updated_at = 0.0
        self.traces: dict[str, dict[str, Any]] = {}
        self.baselines: dict[str, dict[str, Any]] = {}

    def as_json(self) -> dict[str, Any]:
        return {
            "all_bugs": list(ALL_BUGS),
            "run_id": self.run_id,
            "verdict": self.verdict,
            "message": self.message,
            "updated_at": self.updated_at,
            "rows": self.rows,
            "findings": self.findings,
        }


def install(environment: Any, state: dict[str, Any]) -> None:
    """Register the routes, the extended tab and the evaluator on this web UI."""
    web_ui = environment.web_ui
    opts = environment.parsed_options
    live_state = LiveState()
    state["live"] = live_state
    base = getattr(opts, "web_base_path", "") or ""
    bp = Blueprint("slo_tab", __name__, url_prefix=f"{base}/slo")
    auth = web_ui.auth_required_if_enabled

    def option(name: str, default: Any = None) -> Any:
        return getattr(environment.parsed_options, name, default) or default

    @bp.route("/")
    @auth
    def page() -> Response:
        return Response(PAGE.read_text(encoding="utf-8"), mimetype="text/html")

    @bp.route("/api/status")
    @auth
    def status() -> Response:
        return jsonify(live_state.as_json())

    @bp.route("/api/bugs", methods=["GET", "POST"])
    @auth
    def bugs() -> Response:
        urls = _sut_urls(environment.host)
        token = option("slo_admin_token", "")
        if request.method == "GET":
            code, body = _admin(urls["order-service"], token, None)
            return Response(json.dumps(body), status=code, mimetype="application/json")
        payload = request.get_json(silent=True) or {}
        name, on = str(payload.get("bug", "")), bool(payload.get("on"))
        change = {"enable": [name]} if on else {"disable": [name]}
        answers = [_admin(url, token, change) for url in urls.values()]
        code, body = answers[0]
        for c, b in answers:  # the state is shared; report the first failure if any
            if c != 200:
                code, body = c, b
                break
        return Response(json.dumps(body), status=code, mimetype="application/json")

    @bp.route("/trace/<trace_id>")
    @auth
    def trace(trace_id: str) -> Response:
        t = live_state.traces.get(trace_id)
        if t is None:
            return Response(
                f"<p>trace {html.escape(trace_id)} is no longer in the live window</p>",
                status=404, mimetype="text/html",
            )
        from slo.report.html import render_trace_html

        page_html = render_trace_html(
            t, baseline=live_state.baselines.get(trace_id), title=f"Worst trace {trace_id}"
        )
        return Response(page_html, mimetype="text/html")

    web_ui.app.register_blueprint(bp)

    # Locust's own UI: an SLO tab (table) fed with each /stats/requests poll
    web_ui.template_args["extended_tabs"] = [{"title": "SLO", "key": "slo"}]
    web_ui.template_args["extended_tables"] = [
        {
            "key": "slo",
            "structure": [
                {"key": "slo", "title": "SLO"},
                {"key": "objective", "title": "Objective"},
                {"key": "observed", "title": "Live value"},
                {"key": "budget", "title": "Budget"},
                {"key": "status", "title": "Status"},
                {"key": "trace_id", "title": "Worst trace (see /slo/)"},
            ],
        }
    ]

    @web_ui.app.after_request
    def _extend(response: Response) -> Response:
        if request.path == f"{base}/stats/requests" and response.is_json:
            data = response.get_json()
            data["extended_stats"] = [{"key": "slo", "data": live_state.rows}]
            response.set_data(json.dumps(data))
        elif request.path in (f"{base}/", base) and response.mimetype == "text/html":
            link = (
                f'<a id="slo-dashboard-link" href="{base}/slo/" target="_blank" '
                'style="position:fixed;right:16px;bottom:16px;z-index:9999;padding:8px 14px;'
                "background:#1976d2;color:#fff;border-radius:6px;font:600 14px sans-serif;"
                'text-decoration:none">SLO dashboard</a>'
            )
            body = response.get_data(as_text=True)
            if "</body>" in body and "slo-dashboard-link" not in body:
                response.set_data(body.replace("</body>", link + "</body>", 1))
        return response

    gevent.spawn(_evaluator, environment, state, live_state)


def _sut_urls(host: str | None) -> dict[str, str]:
    """The bundled SUT's service URLs (bug switches are the SUT's; any other system has none)."""
    try:
        from loadtests import catalog
    except ImportError:
        return {"order-service": (host or "http://127.0.0.1:8080").rstrip("/")}
    return catalog.service_urls(host or catalog.DEFAULT_HOST)


def _admin(url: str, token: str, change: dict[str, Any] | None) -> tuple[int, Any]:
    import requests

    headers = {"Authorization": f"Bearer {token}"}
    try:
        if change is None:
            r = requests.get(f"{url}/admin/bugs", headers=headers, timeout=5)
        else:
            r = requests.post(f"{url}/admin/bugs", headers=headers, json=change, timeout=5)
    except requests.RequestException as e:
        return 502, {"error": f"{url}/admin/bugs unreachable: {e}"}
    try:
        body = r.json()
    except ValueError:
        body = {"error": r.text[:200]}
    if r.status_code != 200 and "error" not in body:
        body = {"error": f"{url}/admin/bugs answered {r.status_code}", **body}
    return r.status_code, body


def _evaluator(environment: Any, state: dict[str, Any], live_state: LiveState) -> None:
    """Every INTERVAL s: evaluate the recent window of the current run (off the event loop)."""
    spec = None
    spec_error = ""
    pool = gevent.get_hub().threadpool
    while True:
        gevent.sleep(float(getattr(environment.parsed_options, "slo_live_interval", 0) or INTERVAL))
        runs = state.get("runs") or []
        if not runs:
            continue
        run = runs[-1]
        opts = environment.parsed_options
        if spec is None and not spec_error:
            try:
                from slo.judge.spec import load_spec

                spec = load_spec(live.resolve_spec_path(getattr(opts, "slo_spec", "")))
            except Exception as e:  # noqa: BLE001 - shown in the tab, never crashes Locust
                spec_error = f"spec: {e}"
        if spec_error:
            live_state.message = spec_error
            continue
        if run.get("end_ns") and time.time_ns() - run["end_ns"] > 60e9:
            continue  # stopped a while ago: keep showing the last result
        try:
            report, msg = pool.spawn(
                live.evaluate_window,
                spec,
                getattr(opts, "slo_store", ".slo/store"),
                run["run_id"],
                float(getattr(opts, "slo_live_window", 15.0) or 15.0),
            ).get()
        except Exception as e:  # noqa: BLE001
            log.warning("SLO live check failed: %s", e)
            live_state.message = f"live check failed: {e}"
            continue
        live_state.run_id = run["run_id"]
        live_state.updated_at = time.time()
        if report is None:
            live_state.message = msg
            continue
        live_state.message = ""
        live_state.verdict = report.get("verdict", "")
        live_state.rows = live.rows_of(report)
        live_state.findings = [
            {k: f.get(k) for k in ("detector", "service", "span", "message", "trace_id", "fails")}
            for f in report.get("findings", [])
        ]
        traces = report.get("traces") or {}
        live_state.traces.update(traces)
        if len(live_state.traces) > MAX_TRACES:
            for key in list(live_state.traces)[: len(live_state.traces) - MAX_TRACES]:
                live_state.traces.pop(key, None)
