"""One way to check a run: load the spec, read the spans, compare with a baseline, report.

`slo check`, `slo gate` and the Locust plugin all end the same way; this module is that end,
so a fix to it (say, how long to wait for the last spans) reaches all three. No Locust, no
SUT: plain library code over the store, the spec and the check.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from slo import units
from slo.errors import SloError


def embedded_spec_path() -> str:
    """The SLO spec shipped inside the package (slo/defaults/slo.yaml): the SUT's spec."""
    return str(resources.files("slo") / "defaults" / "slo.yaml")


def resolve_spec_path(given: str | None, default: str | None = None) -> str:
    """The spec to use: the given path, else ./slo.yaml if present, else `default`
    (the embedded SUT spec unless told otherwise)."""
    if given:
        return given
    if Path("slo.yaml").is_file():
        return "slo.yaml"
    return default or embedded_spec_path()


def wait_for_spans(
    store: Any,
    run_ids: Sequence[str],
    *,
    expected_roots: int | None = None,
    settle: float = 1.0,
    timeout: float = 30.0,
    poll: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
    until: Callable[[], bool] | None = None,
) -> int:
    """Wait until the collector has written the runs' spans; returns the span count seen.

    Services export in batches (OTEL_BSP_SCHEDULE_DELAY), so spans arrive after the requests.
    Done when the count has not grown for `settle` seconds (and, if given, at least
    `expected_roots` spans arrived: a cheap lower bound, one root span per request), or at
    `timeout`, whichever comes first. Unlabelled spans (services that copy no run id) count
    too: they are what a zero-code-instrumented service sends last. `until`, if given, must
    hold too before it returns (the gate: Locust has exited, its client spans flushed).
    """
    from slo.ingest.store import UNLABELLED

    wanted = set(run_ids) | {UNLABELLED}
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while True:
        if settle <= 0 and expected_roots is None and until is not None \
                and time.monotonic() < deadline and not until():
            # nothing to settle: no count is needed before `until` holds, and each one reads
            # the store (CPU the processes being waited for, exiting, need on a small box)
            sleep(poll)
            continue
        try:
            count = sum(r.spans for r in store.runs() if r.run_id in wanted)
        except SloError:
            count = 0
        now = time.monotonic()
        if count != last:
            last, stable_since = count, now
        enough = expected_roots is None or count >= expected_roots
        if until is not None and now < deadline and not until():
            sleep(poll)
            continue
        if (enough and now - stable_since >= settle) or now >= deadline:
            return count
        if not enough and count > 0 and now - stable_since >= max(settle, 5.0):
            return count  # fewer spans than requests (e.g. connection errors): settled anyway
        sleep(poll)


def summary_text(report: dict[str, Any], report_dir: str | os.PathLike | None = None) -> str:
    """A few lines for a terminal or a CI log: verdict, what failed and why, where to look."""
    results = report.get("results", [])
    failed = [r for r in results if r.get("status") != "pass"]
    findings = [f for f in report.get("findings", []) if f.get("fails")]
    lines = [
        f"SLO verdict: {str(report.get('verdict', '?')).upper()}  "
        f"({len(results) - len(failed)}/{len(results)} results pass, run {report.get('run_id')}"
        + (f" vs baseline {report['baseline_run_id']}" if report.get("baseline_run_id") else "")
        + ")"
    ]
    for r in failed:
        unit = r.get("unit") or ""
        lines.append(
            f"  FAIL {r.get('slo')} {r.get('objective')} [{r.get('status')}]: "
            f"observed {units.value(r.get('observed'), unit)}, budget {units.budget(r)}"
            + (f", baseline {units.value(r.get('baseline'), unit)}" if r.get("baseline") is not None else "")
        )
        if r.get("explanation"):
            lines.append(f"       {r['explanation']}")
        if r.get("trace_id"):
            lines.append(f"       worst trace {r['trace_id']}")
    for f in findings:
        lines.append(
            f"  FINDING {f.get('detector')} in {f.get('service')} {f.get('span')}: "
            f"{f.get('message') or f.get('statement') or ''}".rstrip()
        )
        if f.get("statement") and f.get("message") and f["statement"] not in f["message"]:
            lines.append(f"       statement: {f['statement']}")
    if report_dir:
        lines.append(f"reports: {Path(report_dir) / 'slo-report.html'} (and .json, .md, .sarif, junit.xml)")
    return "\n".join(lines)


@dataclass
class Outcome:
    """A finished check: the report, the exit code it means, where the reports went."""

    report: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def code(self) -> int:
        return 0 if self.report.get("verdict") == "pass" else 1


def judge(
    spec: Any,
    spans: Any,
    *,
    baseline: dict[str, Any] | None = None,
    run_meta: dict[str, Any] | None = None,
    run_id: str | None = None,
    report_dir: str | os.PathLike | None = None,
    extra: dict[str, Any] | None = None,
    **check_options: Any,
) -> Outcome:
    """Check `spans` (one run) under `spec` against `baseline`; write the reports if asked.

    `extra` is merged into the report before it is written (the gate's own section, say);
    `check_options` go to `run_check` as they are.
    """
    from slo.judge.check import run_check
    from slo.report.writers import write_reports

    report = run_check(spec, spans, baseline, run_meta, run_id=run_id, **check_options)
    if extra:
        report.update(extra)
    paths = write_reports(report, report_dir) if report_dir is not None else {}
    return Outcome(report, paths)


def read_for_check(store: Any, run_ids: str | list[str], *, start_ns: int | None = None,
                   end_ns: int | None = None) -> tuple[Any, Any]:
    """(spans, source) of runs of a `SpanStore`, for `run_check(..., source=source)`.

    When the runs sit in Parquet only, the table holds `slo.check.CORE_COLUMNS` and the
    source (`slo.ingest.runsource.RunSource`) reads the attributes and whole traces on demand;
    otherwise (a collector is still writing) the table holds `CHECK_COLUMNS` and the
    source is None. From Parquet, `slo.ingest.store.DICTIONARY_COLUMNS` come dictionary-
    encoded (`RunIndex.codes` reads their codes as they are).
    """
    from slo.ingest.store import DICTIONARY_COLUMNS
    from slo.judge.check import CHECK_COLUMNS, CORE_COLUMNS

    source = store.source(run_ids, start_ns=start_ns, end_ns=end_ns)
    if source is None:
        return store.read(run_ids, start_ns=start_ns, end_ns=end_ns, columns=CHECK_COLUMNS,
                          contiguous=True), None
    # names, statements and messages stay dictionary-encoded, as Parquet stores them: a
    # 4-byte code per span each instead of the strings (10M spans: ~1 GiB less)
    spans = store.read(run_ids, start_ns=start_ns, end_ns=end_ns, columns=CORE_COLUMNS,
                       dictionary=DICTIONARY_COLUMNS, contiguous=True, packed_ids=True)
    return spans, source


def check_store_run(
    *,
    spec_path: str,
    store_path: str | os.PathLike,
    run_id: str,
    meta: dict[str, Any] | None = None,
    baseline_path: str | None = None,
    report_dir: str | os.PathLike = "reports",
    settle: float = 3.0,
    expected_roots: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Check one finished run of a span store (what the Locust plugin does when a test ends).

    Records `meta` first, waits for the run's last spans, reads them (with the spans of
    services that copy no run id, joined by trace), then `judge`. Raises SloError on bad input.
    """
    from slo.ingest.store import SpanStore
    from slo.judge.baseline import load_baseline
    from slo.judge.spec import load_spec

    spec = load_spec(spec_path)
    store = SpanStore(Path(store_path))
    if meta is not None:
        store.write_run_meta(run_id, meta)
    wait_for_spans(store, [run_id], expected_roots=expected_roots, settle=settle, sleep=sleep)
    spans, source = read_for_check(store, [run_id])
    baseline = load_baseline(baseline_path) if baseline_path else None
    return judge(spec, spans, baseline=baseline, run_meta=store.read_run_meta(run_id),
                 run_id=run_id, report_dir=report_dir, source=source)
