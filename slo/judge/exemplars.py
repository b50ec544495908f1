"""The traces a report shows, and what the check says about them.

Every result names an exemplar (the request at the failing percentile, the worst one, the
first error), every finding its evidence; the report carries those traces whole. A failing
latency result is also explained from traces: the candidate's critical-path profile against
the baseline's (attribution), and where its worst trace spent its time. Only the handful of
traces named here are turned into Python dicts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slo import units
from slo.judge import explain
from slo.judge.critical_path import self_times
from slo.judge.results import Finding, Result, TraceView
from slo.judge.summary import SloEval, attribution_picks, subtree_traces
from slo.judge.traces import trace_dict
from slo.judge.tree import RunIndex


class Exemplars:
    """Points results at their exemplar spans and collects the traces the report needs."""

    def __init__(self, ix: RunIndex):
        self.ix = ix
        self.needed: set[str] = set()

    def point(self, r: Result, row: int) -> Result:
        """Make span-table row `row` the exemplar of `r`: its trace, and its span in it."""
        r.exemplar_row = int(row)
        ids = self.ix.rows(np.array([row]), ["trace_id", "span_id"])[0]
        r.trace_id, r.span_id = str(ids["trace_id"]), str(ids["span_id"])
        self.needed.add(r.trace_id)
        return r

    def traces(self, results: list[Result], findings: list[Finding],
               evals: dict[str, SloEval]) -> dict[str, TraceView]:
        """The report's candidate traces; explains the results that asked for it.

        Failing latency regressions get their latency attributed to span groups (the trace
        rows of `ATTRIBUTION_TRACES` requests, read but not shown); failing latency
        objectives say where their worst trace spent its time."""
        for f in findings:
            self.needed |= f.trace_ids()
        shown = set(self.needed)
        attribute = [r for r in results if r.attribute]
        for r in attribute:
            ev = evals[r.slo]
            picks = attribution_picks(ev)
            self.needed |= {x["trace_id"] for x in self.ix.rows(ev.rows[picks], ["trace_id"])}
        # the shown traces whole; the rest only as attribution reads them
        trace_rows = {**self.ix.trace_rows(self.needed - shown, whole=False),
                      **self.ix.trace_rows(shown)}
        traces = {tid: TraceView.from_dict(trace_dict(trace_rows[tid], "candidate"))
                  for tid in sorted(shown) if trace_rows.get(tid)}
        for r in attribute:
            contributions = attribution(self.ix, evals[r.slo], r.base, trace_rows)
            if contributions:
                r.contributions = contributions
                r.explanation += " " + explain.describe(contributions)
        for r in results:
            if r.explain_worst and r.trace_id in traces:
                sentence = worst_sentence(traces[r.trace_id])
                if sentence:
                    r.explanation += " " + sentence
        return traces


def attribution(ix: RunIndex, ev: SloEval, base: dict[str, Any] | None,
                trace_rows: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]] | None:
    """The span groups whose critical-path time grew most against the baseline's profile."""
    if not base or not base.get("profile"):
        return None
    picks: np.ndarray = attribution_picks(ev)
    cand = explain.profile(subtree_traces(ix, ev, trace_rows, picks, "candidate"))
    return explain.attribute_profiles(base["profile"], cand, top=5)


def worst_sentence(trace: TraceView) -> str:
    """Where the worst trace spent its critical-path time: its top two span groups."""
    times = self_times(trace.as_dict())
    if not times:
        return ""
    spans = {s["span_id"]: s for s in trace.spans}
    top = sorted(times.items(), key=lambda kv: -kv[1])[:2]
    parts = []
    for sid, ms in top:
        s = spans.get(sid)
        if s is None or ms <= 0:
            continue
        label = explain.group_label(explain.group_of(s))
        parts.append(f"{label} {units.duration_ms(ms)}")
    if not parts:
        return ""
    return (f"Worst trace {trace.trace_id[:12]}… ({units.duration_ms(trace.duration_ms)}): "
            f"most critical-path time in " + ", then ".join(parts) + ".")
