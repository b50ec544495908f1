"""Checking a Locust run: the final verdict and the live view, without any Locust import.

`final_check` is what the plugin runs when the test ends; `evaluate_window` is what the SLO
tab runs every few seconds on the recent spans of the current run. Both call the `slo`
library (spec, store, check, reports) and turn its errors into an exit code and one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slo import units
from slo.errors import SloError
from slo.pipeline import check_store_run, resolve_spec_path, summary_text

__all__ = ["final_check", "evaluate_window", "resolve_spec_path", "rows_of"]


def final_check(
    *,
    spec_path: str,
    store_path: str,
    run_id: str,
    meta: dict[str, Any] | None,
    baseline_path: str | None,
    report_dir: str,
    settle: float = 3.0,
    expected_roots: int | None = None,
    wait: Callable[[float], None] = time.sleep,
) -> tuple[int, str]:
    """Check one finished run: (exit code, text to print). Never raises for a bad input."""
    try:
        outcome = check_store_run(
            spec_path=spec_path, store_path=store_path, run_id=run_id, meta=meta,
            baseline_path=baseline_path, report_dir=report_dir, settle=settle,
            expected_roots=expected_roots, sleep=wait,
        )
    except SloError as e:
        return 2, f"SLO check could not run: {e}"
    except ImportError as e:
        return 2, f"SLO check could not run: the slo library is incomplete ({e})"
    except Exception as e:  # noqa: BLE001 - a crash in the check is "could not run", not "fail"
        return 2, f"SLO check crashed: {type(e).__name__}: {e}"
    report = outcome.report
    code = 0 if report.get("verdict") == "pass" else 1
    return code, _table(report) + summary_text(report, report_dir)


def _table(report: dict[str, Any]) -> str:
    """The check's terminal table and worst-trace waterfalls, as text (empty if unavailable)."""
    try:
        import io

        from rich.console import Console

        from slo.report.writers import print_report

        buf = io.StringIO()
        print_report(report, console=Console(file=buf, width=120, force_terminal=False))
        return buf.getvalue()
    except Exception:  # noqa: BLE001 - the summary below still says everything essential
        return ""


def rows_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's results as flat rows for the SLO tab (one per objective/regression)."""
    rows = []
    for r in report.get("results", []):
        rows.append(
            {
                "name": f"{r.get('slo')} {r.get('objective')}",
                "slo": r.get("slo"),
                "objective": r.get("objective"),
                "kind": r.get("kind", "objective"),
                "status": r.get("status"),
                "observed": units.value(r.get("observed"), r.get("unit")),
                "budget": units.value(r.get("budget"), r.get("unit")),
                "samples": r.get("samples", 0),
                "explanation": r.get("explanation", ""),
                "trace_id": r.get("trace_id") or "",
            }
        )
    return rows


def evaluate_window(
    spec: Any, store_path: str, run_id: str, window_s: float
) -> tuple[dict[str, Any] | None, str]:
    """(report over the last `window_s` seconds of `run_id`, message). Cheap enough for 3 s.

    A window (not the whole run) so a bug switched on shows within seconds, and switching it
    off clears it again. No spans yet is a message, not an error.
    """
    from slo.ingest.store import SpanStore
    from slo.judge.check import run_check

    store = SpanStore(Path(store_path))
    try:
        known = {r.run_id for r in store.runs()}
    except SloError as e:
        return None, f"store {store_path}: {e}"
    if run_id not in known:
        return None, f"waiting for spans of run {run_id} in {store_path} (is `slo collect` running?)"
    start_ns = time.time_ns() - int(window_s * 1e9)
    spans = store.read([run_id], start_ns=start_ns)
    if spans.num_rows == 0:
        return None, f"no spans of run {run_id} in the last {window_s:g} s"
    return run_check(spec, spans), ""
