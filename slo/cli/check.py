"""`slo check`: evaluate the spec against one run (and a baseline), write reports, set the exit.

Exit 0: every objective met. Exit 1: an objective failed, a regression was found, a
selector had no data, or a failing finding. Exit 2: the check could not run (bad spec,
unreadable source or baseline, bad flags), with one line saying what to do.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from slo.cli.common import CannotRun
from slo.errors import SloError, SourceError

if TYPE_CHECKING:  # imported where used: every `slo` command (the gate, the collector) loads
    import pyarrow as pa  # this module, and pyarrow alone was most of their start-up

_REL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time_ns(text: str, now_ns: int | None = None) -> int:
    """'15m' (that long ago), an ISO-8601 time, or epoch seconds -> epoch nanoseconds."""
    now_ns = now_ns or time.time_ns()
    m = _REL.match(text)
    if m:
        return now_ns - int(float(m.group(1)) * _SECONDS[m.group(2)] * 1e9)
    try:
        return int(float(text) * 1e9)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time (examples: 15m, 2h, "
                         "2026-01-31T12:00:00Z, 1767225600)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1e9)


def parse_lookback_s(text: str) -> float:
    m = _REL.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (examples: 30s, 15m, 1h)")
    return float(m.group(1)) * _SECONDS[m.group(2)]


def latest_run(table: pa.Table) -> str | None:
    """Among the runs in a table, the one whose spans end last (named runs first)."""
    if not table.num_rows:
        return None
    g = table.group_by("run_id").aggregate([("end_ns", "max")]).to_pylist()
    named = [r for r in g if r["run_id"]] or g
    latest: str | None = max(named, key=lambda r: (r["end_ns_max"], r["run_id"]))["run_id"]
    return latest


def only_run(table: pa.Table, run_id: str | None) -> pa.Table:
    import pyarrow.compute as pc

    if run_id is None or not table.num_rows:
        return table
    return table.filter(pc.equal(table["run_id"], run_id))


class _Source:
    """Where spans come from: the store, OTLP files or Jaeger (in that order of flags)."""

    def __init__(self, store: str, traces: tuple[str, ...], jaeger: str | None,
                 services: tuple[str, ...], since: str | None, until: str | None,
                 lookback: str):
        self.store_path, self.traces, self.jaeger = store, list(traces), jaeger
        self.services = list(services) or None
        self._files_table: pa.Table | None = None
        self.window: tuple[int, int] | None = None
        if jaeger or since or until:  # the store and files are windowed only when asked
            try:
                end = parse_time_ns(until) if until else time.time_ns()
                start = (parse_time_ns(since) if since
                         else end - int(parse_lookback_s(lookback) * 1e9))
            except ValueError as e:
                raise CannotRun(str(e)) from None
            self.window = (start, end)

    def _in_window(self, t: pa.Table) -> pa.Table:
        if self.window is None or not t.num_rows:
            return t
        import pyarrow.compute as pc

        start, end = self.window
        return t.filter(pc.and_(pc.greater_equal(t["start_ns"], start),
                                pc.less(t["start_ns"], end)))

    def read(self, run_id: str | None) -> tuple[pa.Table, str | None, dict[str, Any] | None, Any]:
        """(spans, run id, run metadata, store source or None) of one run (None: the latest)."""
        if self.traces:
            from slo.ingest.sources import read_otlp_files

            if self._files_table is None:
                self._files_table = read_otlp_files(self.traces)
            t = self._in_window(self._files_table)
            rid = run_id if run_id is not None else latest_run(t)
            out = only_run(t, rid)
            if run_id is not None and not out.num_rows:
                known = sorted(set(t["run_id"].to_pylist()))
                raise SourceError(f"run {run_id!r} is not in the trace files (runs there: "
                                  f"{', '.join(map(repr, known)) or 'none'})")
            return out, rid, None, None
        if self.jaeger:
            from slo.ingest.sources import read_jaeger

            assert self.window is not None
            t = read_jaeger(self.jaeger, self.services, *self.window, run_id=run_id)
            rid = run_id if run_id is not None else latest_run(t)
            return only_run(t, rid), rid, None, None
        from slo.ingest.store import SpanStore
        from slo.pipeline import read_for_check

        store = SpanStore(self.store_path)
        rid = run_id if run_id is not None else store.latest_run_id()
        if rid is None:
            raise SourceError(f"span store {self.store_path} holds no spans yet")
        start, end = self.window or (None, None)
        spans, stored = read_for_check(store, rid, start_ns=start, end_ns=end)
        return spans, rid, store.read_run_meta(rid), stored


@click.command("check")
@click.option("--spec", "spec_path", envvar="SLO_SPEC", default="slo.yaml", show_default=True,
              metavar="FILE",
              help="SLO spec (YAML).")
@click.option("--store", envvar="SLO_STORE", default=".slo/store", show_default=True,
              help="Span store directory (the default source).")
@click.option("--traces", "traces", envvar="SLO_TRACES", multiple=True, metavar="FILE",
              help="Read spans from OTLP/JSON files instead of the store (repeatable).")
@click.option("--jaeger", envvar="SLO_JAEGER", metavar="URL",
              help="Read spans from Jaeger's query API (e.g. http://localhost:16686).")
@click.option("--service", "services", envvar="SLO_SERVICE", multiple=True,
              help="With --jaeger: services to fetch (repeatable; default all).")
@click.option("--since", envvar="SLO_SINCE",
              help="Only spans starting after this (15m = 15 minutes ago, ISO time, epoch s).")
@click.option("--until", envvar="SLO_UNTIL", help="Only spans starting before this (default now).")
@click.option("--lookback", envvar="SLO_LOOKBACK", default="1h", show_default=True,
              help="Window length when --jaeger (or --until) is given without --since.")
@click.option("--run-id", envvar="SLO_RUN_ID", help="Run to check (default: the latest).")
@click.option("--baseline", "baseline_path", envvar="SLO_BASELINE", metavar="FILE",
              help="Compare against a saved baseline.")
@click.option("--baseline-run", envvar="SLO_BASELINE_RUN", metavar="ID",
              help="Compare against another run of the same source.")
@click.option("--save-baseline", envvar="SLO_SAVE_BASELINE", metavar="FILE",
              help="Save this run as a baseline file.")
@click.option("--report-dir", envvar="SLO_REPORT_DIR", default="reports", show_default=True,
              help="Directory for slo-report.json/.md/.html and junit.xml.")
@click.option("--format", "fmt", envvar="SLO_FORMAT",
              type=click.Choice(["table", "json", "markdown", "quiet"]), default="table",
              show_default=True, help="What to print on stdout.")
@click.option("--no-color", envvar="SLO_NO_COLOR", is_flag=True, default=False,
              help="No colour in the terminal output.")
@click.pass_context
def command(ctx: click.Context, spec_path: str, store: str, traces: tuple[str, ...],
            jaeger: str | None, services: tuple[str, ...], since: str | None,
            until: str | None, lookback: str, run_id: str | None, baseline_path: str | None,
            baseline_run: str | None, save_baseline: str | None, report_dir: str, fmt: str,
            no_color: bool) -> None:
    """Check one run against the SLO spec (and a baseline); exit 1 if anything fails."""
    # The run's columns are read once and kept: with malloc instead of Arrow's mimalloc pool
    # the decoding buffers go back to the system (10M spans: 2.4 instead of 3.1 GiB after
    # the read, bench/check.py)
    import pyarrow as pa

    from slo.jsonsafe import strict_json
    from slo.judge.baseline import build_baseline, load_baseline
    from slo.judge.baseline import save_baseline as save
    from slo.judge.spec import load_spec
    from slo.pipeline import judge
    from slo.report.writers import print_report, to_markdown

    pa.set_memory_pool(pa.system_memory_pool())
    if traces and jaeger:
        raise CannotRun("give either --traces or --jaeger, not both")
    if baseline_path and baseline_run:
        raise CannotRun("give either --baseline or --baseline-run, not both")
    try:
        spec = load_spec(spec_path)
        source = _Source(store, traces, jaeger, services, since, until, lookback)
        baseline = load_baseline(baseline_path) if baseline_path else None
        spans, rid, meta, stored = source.read(run_id)
        if baseline_run is not None:
            if baseline_run == rid:
                raise CannotRun(f"--baseline-run {baseline_run!r} is the run being checked; "
                                "pick an earlier run")
            bspans, brid, bmeta, bstored = source.read(baseline_run)
            baseline = build_baseline(spec, bspans, bmeta, run_id=brid, source=bstored)
        outcome = judge(spec, spans, baseline=baseline, run_meta=meta, run_id=rid,
                        report_dir=report_dir, source=stored)
        report, paths = outcome.report, outcome.paths
        saved = None
        if save_baseline:
            saved = save(build_baseline(spec, spans, meta, run_id=rid, source=stored),
                         save_baseline)
    except SloError as e:
        raise CannotRun(str(e)) from None
    except OSError as e:
        raise CannotRun(f"cannot write {e.filename or 'output'}: {e.strerror or e}") from None
    except Exception as e:  # a bug, not bad input: still one line, exit 2 (SLO_DEBUG=1 raises)
        if os.environ.get("SLO_DEBUG"):
            raise
        raise CannotRun(f"internal error in slo check: {type(e).__name__}: {e} "
                        "(rerun with SLO_DEBUG=1 for the traceback)") from None

    if fmt == "json":
        click.echo(json.dumps(strict_json(report), indent=1, default=str))
    elif fmt == "markdown":
        click.echo(to_markdown(report))
    elif fmt == "table":
        tty = sys.stdout.isatty()
        from rich.console import Console

        console = Console(no_color=no_color, highlight=False, width=None if tty else 120)
        print_report(report, console)
        click.echo(f"reports: {', '.join(str(p) for p in paths.values())}", err=True)
    if saved is not None:
        click.echo(f"baseline saved: {saved}", err=True)
    ctx.exit(0 if report["verdict"] == "pass" else 1)
