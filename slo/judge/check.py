"""Evaluating a spec over a span table (and a baseline) into the report dict.

The verdict is the product: every objective gets an observed value, its budget, a status,
the number of samples and an exemplar trace; every failure gets an explanation a person can
act on without opening a trace viewer. The heavy lifting over all spans is vectorized
(`slo.judge.tree.RunIndex`); only the handful of traces the report shows or explains are turned
into Python dicts.

This module runs the check and assembles the report; what it judges lives beside it:
`objectives` (budgets), `regressions` (against a baseline, request by request) and `pairs`
(over a gate's interleaved slices), `exemplars` (the traces shown, attribution),
`summary` (the per-SLO distributions both sides are summarised by) and `results` (the typed
results and their JSON).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from slo.ingest.spans import COLUMNS
from slo.judge import completeness
from slo.judge.detectors import run_detectors
from slo.judge.exemplars import Exemplars
from slo.judge.objectives import Objectives
from slo.judge.pairs import (
    REGRESSION_STATS,
    SlicePairs,
    family_decisions,
    latency_comparisons,
    value_comparisons,
)
from slo.judge.regressions import REGRESSION_OBJECTIVES, REQUEST_LEVEL_FLOOR, Regressions
from slo.judge.results import Finding, Result
from slo.judge.spanframe import span_frame
from slo.judge.spec import Spec
from slo.judge.stats import MAX_SAMPLES, downsample, prefetch_scipy
from slo.judge.summary import (
    ATTRIBUTION_TRACES,
    SLICE_SAMPLES,
    SloEval,
    detect_run_id,
    evaluate,
    run_info,
    slice_labels,
    slice_summaries,
    summarize_run,
    summarize_slo,
)
from slo.judge.tree import index_for

__all__ = [  # what callers import from here (the judging itself moved to its modules)
    "ATTRIBUTION_TRACES", "CHECK_COLUMNS", "CORE_COLUMNS", "REGRESSION_OBJECTIVES",
    "REGRESSION_STATS", "REPORT_SAMPLES", "REQUEST_LEVEL_FLOOR", "SLICE_SAMPLES", "SloEval",
    "detect_run_id", "evaluate", "family_decisions", "latency_comparisons", "prefetch_scipy",
    "run_check", "run_detectors", "run_info", "slice_labels", "slice_summaries",
    "summarize_run", "summarize_slo", "value_comparisons",
]

#: The span columns the check, the detectors and the reports read: the resource and event
#: JSON (the largest columns, read by nothing here) stay on disk.
CHECK_COLUMNS = [c for c in COLUMNS if c not in ("resource", "events")]
#: What the check holds in memory when the attributes can be read from the store on demand
#: (`source=`, a `slo.ingest.runsource.RunSource`): the attributes JSON is the largest column.
CORE_COLUMNS = [c for c in CHECK_COLUMNS if c != "attributes"]
REPORT_SAMPLES = 100_000  # latency samples in a report, all SLOs together (see report_samples)


class _Check:
    """One check: the objectives and regressions of every SLO, the detectors' findings,
    the traces shown, assembled into the report."""

    def __init__(self, spec: Spec, spans: pa.Table, baseline: dict[str, Any] | None,
                 run_meta: dict[str, Any] | None, run_id: str | None, slices: Any = None,
                 source: Any = None):
        self.spec = spec
        self.ix = index_for(spans, source)
        self.baseline = baseline
        self.run_id = run_id or (run_meta or {}).get("run_id") or detect_run_id(spans)
        self.run_meta = run_meta
        load = (run_meta or {}).get("load") or run_meta or {}
        self.whole = completeness.assess(self.ix, load.get("requests"))
        self.exemplars = Exemplars(self.ix)
        self.objectives = Objectives(self.ix, self.run_id, self.whole, self.exemplars)
        self.pairs = SlicePairs(self.ix, baseline, slices, self.exemplars)
        self.regressions = Regressions(self.ix, self.run_id, self.pairs, self.exemplars)

    def findings(self, found: list[dict[str, Any]]) -> list[Finding]:
        findings = [Finding.from_detector(f) for f in found]
        if self.whole.detected:  # a sampled run cuts traces: that is not a propagation bug
            for f in findings:
                if f.detector == "broken_trace":
                    f.fails = False
                    f.message += (" (not failing: the run is sampled, and sampling cuts "
                                  "traces too)")
        return findings

    def detect(self) -> list[dict[str, Any]]:
        """The detectors' findings, before the SLOs are evaluated rather than beside them.

        In a thread of their own they overlapped the evaluation (DuckDB runs without the
        GIL), but their memory and the evaluation's then add up: at 10M spans the peak was
        2.5 GiB, one after the other 1.96, for about the same wall time on two cores (the
        two competed for them). They go first because the evaluation's caches stay with
        the index for the report, while the detectors' frame goes when they are done."""
        ix, source = self.ix, self.ix.source
        if source is not None:
            source.fit(ix.n)
        # the detectors join on the parents this index resolved
        frame = span_frame(ix) if ix.n else None
        found = run_detectors(ix.table, self.spec.detectors,
                              sql=source.sql if source is not None else None,
                              con=source.con if source is not None else None, frame=frame,
                              files=source.files if source is not None else None)
        del frame
        pa.default_memory_pool().release_unused()  # (the frame's buffers, to the system)
        return found

    def run(self) -> dict[str, Any]:
        spec, ix = self.spec, self.ix
        found = self.detect()
        evals = [evaluate(ix, s) for s in spec.slos]
        base_slos: dict[str, Any] = (self.baseline or {}).get("slos") or {}
        results: list[Result] = []
        for ev in evals:
            base = base_slos.get(ev.slo.name)
            results += [self.objectives.judge(ev, o, base) for o in ev.slo.objectives]
            if self.baseline is not None:
                results += self.regressions.judge(ev, base)
        self.pairs.decide()
        findings = self.findings(found)
        traces = {tid: t.as_dict() for tid, t in self.exemplars.traces(
            results, findings, {ev.slo.name: ev for ev in evals}).items()}
        if self.baseline:
            for tid, t in (self.baseline.get("traces") or {}).items():
                traces.setdefault(tid, dict(t, role="baseline"))
        failed = any(r.fails for r in results) or any(f.fails for f in findings)
        return {
            "version": 1,
            "verdict": "fail" if failed else "pass",
            "run_id": self.run_id,
            "baseline_run_id": (self.baseline or {}).get("run_id"),
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "spec": spec.path,
            "run": run_info(ix, self.run_id, self.run_meta),
            "completeness": self.whole.as_dict(),
            "baseline_run": (self.baseline or {}).get("run"),
            "results": [r.as_dict() for r in results],
            "findings": [f.as_dict() for f in findings],
            "slos": [self.slo_block(ev, base_slos.get(ev.slo.name)) for ev in evals],
            "traces": traces,
        }

    @property
    def report_samples(self) -> int:
        """Latency samples per SLO in the report: MAX_SAMPLES up to 50 SLOs, then fewer, so
        the report (JSON, HTML charts) stays ~100k samples however many SLOs there are."""
        return max(200, min(MAX_SAMPLES, REPORT_SAMPLES // max(len(self.spec.slos), 1)))

    def slo_block(self, ev: SloEval, base: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "name": ev.slo.name,
            "select": ev.slo.select.as_dict(),
            "samples": ev.n,
            "latency_ms": {"candidate": downsample(ev.durations, self.report_samples),
                           "baseline": (base or {}).get("latency_ms") if self.baseline
                           else None},
            "budgets_ms": {o.name: o.budget for o in ev.slo.objectives if o.unit == "ms"},
        }


def run_check(spec: Spec, spans: pa.Table, baseline: dict[str, Any] | None = None,
              run_meta: dict[str, Any] | None = None, *, run_id: str | None = None,
              slices: Any = None, source: Any = None) -> dict[str, Any]:
    """Evaluate `spec` over `spans` (one run), against `baseline` if given: the report dict.

    `slices`: one label per span (the gate's slice run ids). With a baseline built with its
    own slices (`build_baseline(..., slices=...)`) interleaved with these, regressions are
    judged over ABBA slice pairs; otherwise request by request, as each result's `method`
    says. `source`: a `slo.ingest.runsource.RunSource` of the same spans, when `spans` holds only
    `CORE_COLUMNS`: the detectors and the sampling signals read the attributes from it, and
    the report's traces come whole from it.
    """
    return _Check(spec, spans, baseline, run_meta, run_id, slices, source).run()
