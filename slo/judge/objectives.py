"""Objectives: each SLO's budgets (latency percentiles, error rate, per-request counts)
against the run alone, each verdict with its exemplar and an explanation.

Per-request counts need the whole trace of the request: when the run has incomplete traces
(`slo.judge.completeness`) the counts are taken over the requests whose traces arrived whole,
and the explanation says how many were left out.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from slo import units
from slo.judge import sqlnorm
from slo.judge.causes import error_sources, no_data, top_statements
from slo.judge.completeness import Completeness
from slo.judge.exemplars import Exemplars
from slo.judge.results import Result, num
from slo.judge.spec import Objective
from slo.judge.stats import percentile
from slo.judge.summary import SloEval
from slo.judge.tree import RunIndex


class Objectives:
    """Judges the objectives of the SLOs of one run."""

    def __init__(self, ix: RunIndex, run_id: str | None, whole: Completeness,
                 exemplars: Exemplars):
        self.ix = ix
        self.run_id = run_id
        self.whole = whole
        self.exemplars = exemplars

    def judge(self, ev: SloEval, o: Objective, base: dict[str, Any] | None) -> Result:
        """The verdict on objective `o` of `ev`'s SLO; `base`: the baseline's summary of the
        SLO, if any, whose value of the objective is shown beside the budget."""
        r = self._judge(ev, o)
        r.spec_line = o.line or ev.slo.line
        r.baseline = baseline_value(base, o)
        return r

    def _result(self, ev: SloEval, o: Objective, status: str, observed: Any, unit: str,
                samples: int, text: str, row: int | None, explain_worst: bool = False
                ) -> Result:
        r = Result(ev.slo.name, o.name, "objective", status, observed, o.budget, unit,
                   samples, text, ev.slo.line, explain_worst=explain_worst)
        return r if row is None else self.exemplars.point(r, row)

    def _judge(self, ev: SloEval, o: Objective) -> Result:
        result = functools.partial(self._result, ev, o)
        if ev.n == 0:
            return result("no_data", None, o.unit, 0, no_data(self.ix, ev, self.run_id), None)
        if o.percentile is not None:
            observed = percentile(ev.durations, o.percentile)
            worst = int(np.argmax(ev.durations))
            ok = observed <= o.budget
            label = "max" if o.percentile == 100 else f"p{o.percentile:g}"
            text = (f"{label} latency {units.duration_ms(observed)} "
                    f"{'within' if ok else 'over'} the {units.duration_ms(o.budget)} budget "
                    f"({ev.n} requests).")
            return result("pass" if ok else "fail", observed, "ms", ev.n, text,
                          int(ev.rows[worst]), explain_worst=not ok)
        if o.name == "error_rate":
            k = int(ev.errors.sum())
            observed = k / ev.n
            ok = observed <= o.budget
            text = (f"{k} of {ev.n} requests failed ({observed * 100:.2f}%, budget "
                    f"{o.budget * 100:g}%).")
            ex = None
            if k:
                err_rows = ev.rows[ev.errors]
                ex = int(err_rows[0])
                if not ok:
                    text += " " + error_sources(self.ix, err_rows)
            return result("pass" if ok else "fail", observed, "ratio", ev.n, text, ex)
        return self._count(ev, o)

    def _count(self, ev: SloEval, o: Objective) -> Result:
        values = {"db_queries": ev.counts.db_queries, "repeated_queries": ev.counts.repeated,
                  "span_count": ev.span_counts}[o.name]
        assert values is not None
        # counts inside one request need the whole trace: cut ones would undercount
        keep = self.whole.keep(ev.rows)
        partial = 0 < int(keep.sum()) < ev.n
        used = values[keep] if partial else values
        worst = int(np.argmax(np.where(keep, values, -1))) if partial else \
            int(np.argmax(values))
        observed = float(values[worst])
        ok = observed <= o.budget
        what = {"db_queries": "DB queries", "repeated_queries": "runs of one statement",
                "span_count": "spans"}[o.name]
        text = (f"At most {observed:g} {what} under one request (budget {o.budget:g}; "
                f"median {percentile(used, 50):g}).")
        if partial:
            text += (f" Counted over the {len(used)} of {ev.n} requests whose traces "
                     f"arrived whole ({ev.n - len(used)} incomplete left out).")
        if o.name == "repeated_queries" and ev.counts.repeated_code[worst] >= 0:
            stmt = self.ix.statements[1][ev.counts.repeated_code[worst]]
            info = ev.counts.per_statement.get(stmt, {})
            text += (f" Most repeated: {info.get('service', '')} "
                     f"`{sqlnorm.short(stmt)}` ran {observed:g} times in one request.")
        elif o.name == "db_queries" and not ok:
            text += " " + top_statements(ev)
        return self._result(ev, o, "pass" if ok else "fail", observed, "count", len(used),
                            text, int(ev.rows[worst]))


def baseline_value(base: dict[str, Any] | None, o: Objective) -> float | None:
    """The objective's value in the baseline run, for context beside the budget."""
    if not base or not base.get("samples"):
        return None
    if o.percentile is not None:
        key = "max" if o.percentile == 100 else f"p{o.percentile:g}"
        return num((base.get("latency") or {}).get(key))
    if o.name == "error_rate":
        return num(base.get("errors", 0) / base["samples"])
    return num((base.get(o.name) or {}).get("max"))
