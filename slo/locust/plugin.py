"""The Locust SLO plugin: run id, run metadata, the final check and exit code, the SLO tab.

Any Locust file gets it with one line, `import slo.locust.plugin  # noqa: F401`, or unchanged
with `locust -f theirs.py,<path of slo/locust/slo_plugin.py>` (what `slo gate` does); importing
it registers the listeners and wraps both HTTP clients so every request carries the trace
context and the run id (`slo.locust.hooks`). Roles:

- every process: `test_start` sets the run id that users put in `baggage` (the master makes it
  and Locust forwards it to workers inside the spawn message's parsed options);
- the master (or the only process): records run metadata in the store, and on `quitting` runs
  the check for this run, prints it, writes the reports and sets `process_exit_code`
  (0 pass, 1 fail, 2 could not run);
- with a web UI: an **SLO** tab in Locust's UI (live table), and `/slo/`, a page with each
  objective's live value against its budget, the SUT's bug switches and links to the worst
  trace of each failing objective, rendered as a waterfall.

The slow parts (reading the store, evaluating the spec) run in gevent's thread pool so the
web UI and the users keep running while they work.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.runners import (
    STATE_INIT,
    STATE_STOPPED,
    STATE_STOPPING,
    MasterRunner,
    WorkerRunner,
)

from slo.locust import hooks, live
from slo.locust.context import CURRENT, TRACER, new_run_id

log = logging.getLogger("slo")

#: per-process plugin state (one Locust environment per process)
STATE: dict[str, Any] = {}

hooks.install()


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    # parser.add_argument (not a group): only Locust's own method knows include_in_web_ui
    group = parser
    group.add_argument(
        "--slo-spec",
        env_var="LOCUST_SLO_SPEC",
        default="",
        help="SLO spec (default: ./slo.yaml if present, else the embedded default spec)",
    )
    group.add_argument(
        "--slo-store",
        env_var="LOCUST_SLO_STORE",
        default=".slo/store",
        help="span store written by `slo collect` (default .slo/store)",
    )
    group.add_argument(
        "--slo-baseline",
        env_var="LOCUST_SLO_BASELINE",
        default="",
        help="saved baseline to compare the run against (slo check --save-baseline)",
    )
    group.add_argument(
        "--slo-run-id",
        env_var="LOCUST_SLO_RUN_ID",
        default="",
        help="run id sent as baggage slo.run_id (default: a new id per test)",
    )
    group.add_argument(
        "--slo-report-dir",
        env_var="LOCUST_SLO_REPORT_DIR",
        default="reports",
        help="where the final check writes its reports (default reports/)",
    )
    group.add_argument(
        "--slo-no-check",
        env_var="LOCUST_SLO_NO_CHECK",
        action="store_true",
        default=False,
        include_in_web_ui=False,
        help="send run ids but do not check at the end (slo gate checks itself)",
    )
    group.add_argument(
        "--slo-run-id-file",
        env_var="LOCUST_SLO_RUN_ID_FILE",
        default="",
        include_in_web_ui=False,
        help="follow the run id written in this file (used by slo gate to switch slices)",
    )
    group.add_argument(
        "--slo-admin-token",
        env_var="LOCUST_SLO_ADMIN_TOKEN",
        default=os.environ.get("SUT_ADMIN_TOKEN", ""),
        include_in_web_ui=False,
        help="bearer token for the SUT's /admin/bugs (default $SUT_ADMIN_TOKEN)",
    )
    group.add_argument(
        "--slo-otlp-endpoint",
        env_var="LOCUST_SLO_OTLP_ENDPOINT",
        default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://127.0.0.1:4318",
        include_in_web_ui=False,
        help="where Locust sends its client spans, the root of every trace "
        "(default $OTEL_EXPORTER_OTLP_ENDPOINT or http://127.0.0.1:4318; 'none' to disable)",
    )
    group.add_argument(
        "--slo-settle",
        env_var="LOCUST_SLO_SETTLE",
        type=float,
        default=3.0,
        include_in_web_ui=False,
        help="seconds without new spans before the final check reads the store (default 3)",
    )
    group.add_argument(
        "--slo-live-interval",
        env_var="LOCUST_SLO_LIVE_INTERVAL",
        type=float,
        default=3.0,
        include_in_web_ui=False,
        help="seconds between two live evaluations for the SLO tab (default 3)",
    )
    group.add_argument(
        "--slo-live-window",
        env_var="LOCUST_SLO_LIVE_WINDOW",
        type=float,
        default=15.0,
        include_in_web_ui=False,
        help="seconds of recent spans the live SLO tab evaluates (default 15)",
    )


def _opt(environment: Any, name: str, default: Any = None) -> Any:
    return getattr(environment.parsed_options, name, default) if environment.parsed_options else default


@events.init.add_listener
def _on_init(environment: Any, **_kw: Any) -> None:
    run_id_file = _opt(environment, "slo_run_id_file", "")
    if run_id_file:
        CURRENT.run_id_file = run_id_file
    TRACER.configure(str(_opt(environment, "slo_otlp_endpoint", "") or ""))
    TRACER.preload()
    if isinstance(environment.runner, WorkerRunner):
        _refresh_loop_clock()
        return
    STATE.clear()
    STATE.update(runs=[], peak_users=0, final=None, exit_code=None)
    if not _opt(environment, "slo_no_check", False):
        _validate_spec(environment)
    if environment.web_ui is not None:
        from slo.locust import web  # only where there is a web UI to extend

        web.install(environment, STATE)
    _refresh_loop_clock()


def _refresh_loop_clock() -> None:
    """Make gevent's loop read the clock again before Locust arms `--run-time`.

    The loop caches "now" and has not run since `import locust`; everything after (loading
    the Locust files, this plugin's imports, validating the spec) is seconds on a busy box,
    and Locust's run-time timer is armed relative to that stale time: a `-t 3s` test would
    stop after one second.
    """
    gevent.get_hub().loop.update_now()


@events.spawning_complete.add_listener
def _on_spawned(user_count: int, **_kw: Any) -> None:
    STATE["peak_users"] = max(STATE.get("peak_users", 0), user_count)


@events.worker_report.add_listener
def _on_worker_report(client_id: str, **_kw: Any) -> None:
    STATE.setdefault("worker_ids", set()).add(client_id)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        # the master chose the id; Locust forwarded it with the spawn message
        CURRENT.run_id = _opt(environment, "slo_current_run_id", "") or _opt(
            environment, "slo_run_id", ""
        )
        return
    run_id = _opt(environment, "slo_run_id", "") or new_run_id()
    if environment.parsed_options is not None:
        environment.parsed_options.slo_current_run_id = run_id
    CURRENT.run_id = run_id
    STATE.setdefault("runs", []).append({"run_id": run_id, "start_ns": time.time_ns(), "end_ns": None})
    STATE["peak_users"] = 0
    STATE["worker_ids"] = set()
    log.info("SLO run id: %s", run_id)


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kw: Any) -> None:
    TRACER.flush()
    if isinstance(environment.runner, WorkerRunner) or not STATE.get("runs"):
        return
    run = STATE["runs"][-1]
    run["end_ns"] = time.time_ns()
    run["users"] = max(STATE.get("peak_users", 0), environment.runner.target_user_count or 0)


def _validate_spec(environment: Any) -> None:
    """A bad spec stops Locust before any load is sent (exit 2), not after the test."""
    from slo.errors import SloError
    from slo.judge.spec import load_spec

    path = live.resolve_spec_path(_opt(environment, "slo_spec", ""))
    try:
        load_spec(path)
    except SloError as e:
        print(f"SLO check could not run: {e}", flush=True)
        raise SystemExit(2) from None


def _run_meta(environment: Any, run: dict[str, Any]) -> dict[str, Any]:
    total = environment.runner.stats.total
    end_ns = run.get("end_ns") or time.time_ns()
    seconds = max(1e-9, (end_ns - run["start_ns"]) / 1e9)
    load = {
        "users": int(run.get("users") or STATE.get("peak_users") or 0),
        "requests": int(total.num_requests),
        "failures": int(total.num_failures),
        "rps": round(total.num_requests / seconds, 2),
        "p95_ms": total.get_response_time_percentile(0.95) if total.num_requests else None,
    }
    return {
        "version": 1,
        "run_id": run["run_id"],
        "source": "locust",
        "host": environment.host,
        "start_ns": run["start_ns"],
        "end_ns": end_ns,
        **load,
        "load": load,
        # workers that reported during the run (at `quitting` they may have disconnected)
        "workers": max(len(STATE.get("worker_ids") or ()),
                       len(environment.runner.clients)
                       if isinstance(environment.runner, MasterRunner) else 0),
    }


@events.quitting.add_listener
def _on_quitting(environment: Any, **_kw: Any) -> None:
    """The master's (or single process's) verdict becomes Locust's exit code."""
    if isinstance(environment.runner, WorkerRunner) or not STATE.get("runs"):
        TRACER.flush()
        return
    if environment.runner.state not in (STATE_INIT, STATE_STOPPED, STATE_STOPPING):
        # Ctrl-C/SIGTERM during a test: Locust quits before it stops the users; stop them
        # now, or the run would keep growing while we wait for its spans
        environment.runner.stop()
    TRACER.flush()
    run = STATE["runs"][-1]
    if not run.get("end_ns"):
        run["end_ns"] = time.time_ns()
    meta = _run_meta(environment, run)
    if _opt(environment, "slo_no_check", False):
        _write_meta(environment, run["run_id"], meta)
        return
    spec_path = live.resolve_spec_path(_opt(environment, "slo_spec", ""))
    code, text = live.final_check(
        spec_path=spec_path,
        store_path=_opt(environment, "slo_store", ".slo/store"),
        run_id=run["run_id"],
        meta=meta,
        baseline_path=_opt(environment, "slo_baseline", "") or None,
        report_dir=_opt(environment, "slo_report_dir", "reports"),
        settle=float(_opt(environment, "slo_settle", 3.0)),
        expected_roots=meta["requests"],
        wait=gevent.sleep,
    )
    print(text, flush=True)
    STATE["exit_code"] = code
    environment.process_exit_code = code


@events.quitting.add_listener
def _on_quitting_last(environment: Any, **_kw: Any) -> None:
    """In a gate's Locust (it follows a run-id file), after everything else at `quitting`:
    the process exits next, and its last garbage collection need not walk every object
    Locust, gevent and the SDK made. The gate waits for this exit after every load before it
    stops the target: SIGTERM to exit 0.11-0.29 s -> 0.06-0.09 s. Finalizers run as usual."""
    if _opt(environment, "slo_run_id_file", ""):
        gc.freeze()


def _write_meta(environment: Any, run_id: str, meta: dict[str, Any]) -> None:
    try:
        from slo.ingest.runmeta import write_run_meta  # not the store's module: no pyarrow

        write_run_meta(Path(_opt(environment, "slo_store", ".slo/store")), run_id, meta)
    except Exception as e:  # noqa: BLE001 - metadata is a nicety; never fail the run for it
        log.warning("could not record run metadata for %s: %s", run_id, e)
