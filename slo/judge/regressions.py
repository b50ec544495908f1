"""Regressions: each SLO against the baseline's summary of it, by the rules of
`slo.judge.spec.Regression`.

Latency needs a relative AND absolute slow-down AND statistical significance; counts fail on
any increase beyond the threshold of the per-request median or maximum; error rates need a
significant increase in proportion. A gate's interleaved baseline is judged over slice pairs
(`slo.judge.pairs`); anything else (a saved baseline, too few pairs) request by request
here, and each result's `method` says which.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from slo import units
from slo.judge.causes import error_sources, no_data, statement_changes
from slo.judge.exemplars import Exemplars
from slo.judge.pairs import REGRESSION_STATS, SlicePairs
from slo.judge.results import Result, num
from slo.judge.stats import (
    TestResult,
    mann_whitney_greater,
    percentile,
    proportion_greater,
    shift_or_tail,
    tail_greater,
)
from slo.judge.summary import SloEval, count_summary, latency_summary
from slo.judge.traces import nearest
from slo.judge.tree import RunIndex

#: Least (relative, ms) slow-down the request-level latency tests fail on: what they needed to
#: stay quiet on a shared box before the slices were used (issue 11); a spec's larger
#: threshold applies as it is.
REQUEST_LEVEL_FLOOR = (0.4, 3.0)

REGRESSION_OBJECTIVES = {
    "latency": "latency_regression",
    "error_rate": "error_rate_regression",
    "db_queries": "db_queries_regression",
    "repeated_queries": "repeated_queries_regression",
}


class Regressions:
    """Judges the regressions of the SLOs of one run against a baseline."""

    def __init__(self, ix: RunIndex, run_id: str | None, pairs: SlicePairs,
                 exemplars: Exemplars):
        self.ix = ix
        self.run_id = run_id
        self.pairs = pairs
        self.exemplars = exemplars

    def judge(self, ev: SloEval, base: dict[str, Any] | None) -> list[Result]:
        """One result per regression rule of `ev`'s SLO (slice-pair ones decided later, by
        `SlicePairs.decide`); `base`: the baseline's summary of the SLO."""
        slo, reg = ev.slo, ev.slo.regression
        checks = [("latency", reg.latency), ("error_rate", reg.error_rate),
                  ("db_queries", reg.db_queries), ("repeated_queries", reg.repeated_queries)]
        out = []
        for what, threshold in checks:
            if threshold is None:
                continue
            name = REGRESSION_OBJECTIVES[what]
            unit = {"latency": "ms", "error_rate": "ratio"}.get(what, "count")
            if ev.n == 0:
                out.append(Result(slo.name, name, "regression", "no_data", None, threshold,
                                  unit, 0, no_data(self.ix, ev, self.run_id), slo.line))
            elif not base or not base.get("samples"):
                out.append(Result(slo.name, name, "regression", "no_data", None, threshold,
                                  unit, ev.n, f"The baseline has no samples of SLO "
                                  f"{slo.name!r}: nothing to compare with (re-record the "
                                  "baseline with this spec).", slo.line))
            elif base.get("select", slo.select.as_dict()) != slo.select.as_dict():
                out.append(Result(slo.name, name, "regression", "no_data", None, threshold,
                                  unit, ev.n, f"The baseline selected other spans for SLO "
                                  f"{slo.name!r} ({base['select']}, now "
                                  f"{slo.select.as_dict()}): not comparable; re-record the "
                                  "baseline with this spec.", slo.line))
            elif what == "latency":
                out.append(self.latency(ev, base, threshold, name))
            elif what == "error_rate":
                out.append(self.error_rate(ev, base, threshold, name))
            else:
                out.append(self.count(ev, base, threshold, name, what))
        return out

    def latency(self, ev: SloEval, base: dict[str, Any], threshold: float, name: str
                ) -> Result:
        paired = self.pairs.latency(ev, base, threshold, name)
        if paired is not None:
            return paired
        reg = ev.slo.regression
        # Without interleaved slices the two sides saw different machines: a change smaller
        # than the noise between runs cannot be told from it, so the request-level tests use
        # the thresholds they were tuned with at least (REQUEST_LEVEL_FLOOR).
        threshold = max(threshold, REQUEST_LEVEL_FLOOR[0])
        min_ms = max(reg.latency_min_ms, REQUEST_LEVEL_FLOOR[1])
        cand = latency_summary(ev.durations)
        bl = base.get("latency") or {}
        b_samples = np.asarray(base.get("latency_ms") or [], np.float64)
        mwu = mann_whitney_greater(b_samples, ev.durations, reg.alpha, reg.min_samples)
        welch = welch_greater(bl, cand, ev.n, int(base["samples"]), reg.alpha,
                              reg.min_samples)
        tail = tail_greater(b_samples, ev.durations, 90.0, reg.alpha)
        tests = {"p50": mwu, "p90": tail, "mean": welch}
        failing: tuple[str, Any, Any, TestResult] | None = None
        exceeded: list[str] = []
        parts = []
        for stat in REGRESSION_STATS:
            b, c = bl.get(stat), cand.get(stat)
            if b is None or c is None:
                continue
            rel = (c - b) / b if b > 0 else (math.inf if c > 0 else 0.0)
            test = tests[stat]
            parts.append(f"{stat} {units.duration_ms(b)} -> {units.duration_ms(c)} "
                         f"({units.change(rel) if b > 0 else 'new'})")
            if rel > threshold and (c - b) > min_ms:
                exceeded.append(stat)
                if test.significant and failing is None:
                    failing = (stat, b, c, test)
        stat, b, c, test = failing or ("p50", bl.get("p50"), cand.get("p50"), mwu)
        limit = f"{threshold * 100:g}% and {units.duration_ms(min_ms)}"
        text = "Latency " + ", ".join(parts) + "."
        if failing:
            text += f" {stat} slower by more than {limit}, {test.note}."
        elif not exceeded:
            text += f" Within the threshold (slower by more than {limit} fails)."
        else:
            notes = "; ".join(f"{s}: {tests[s].note}" for s in exceeded)
            verdict = ("no verdict on latency" if all(tests[s].p_value is None
                                                      for s in exceeded)
                       else "noise, not a regression")
            text += (f" {', '.join(exceeded)} slower by more than {limit}, but {notes}: "
                     f"{verdict}.")
            test = tests[exceeded[0]]
        # The exemplar shows the slow-down: at the failing percentile, or deep in the tail
        # when the mean moved (a tail regression: only some requests got slower).
        q = {"p50": 50, "p90": 90, "mean": 99}[stat]
        target = percentile(ev.durations, q)
        row = ev.rows[nearest(ev.durations, target)]
        btid = (base.get("trace_ids") or {}).get("p90" if stat != "p50" else "p50")
        pattern, share = shift_or_tail(b_samples, ev.durations)
        r = Result(ev.slo.name, name, "regression", "fail" if failing else "pass", c,
                   threshold, "ms", ev.n, text, ev.slo.line, baseline=num(b),
                   baseline_trace_id=btid, p_value=test.p_value, significant=test.significant,
                   change=num((c - b) / b) if b and c is not None and b > 0 else None,
                   stat=stat, method=self.pairs.fallback_note(base) + " (Mann-Whitney U, "
                   "Fisher tail, Welch; each at alpha, first significant fails; slower by at "
                   f"least {REQUEST_LEVEL_FLOOR[0] * 100:g}% and {REQUEST_LEVEL_FLOOR[1]:g} ms)",
                   pattern=pattern, affected_share=share, attribute=bool(failing), base=base)
        return self.pairs.said_fallback(self.exemplars.point(r, int(row)))

    def error_rate(self, ev: SloEval, base: dict[str, Any], threshold: float, name: str
                   ) -> Result:
        paired = self.pairs.value(ev, base, threshold, name, "errors")
        if paired is not None:
            return paired
        reg = ev.slo.regression
        k, n = int(ev.errors.sum()), ev.n
        bk, bn = int(base.get("errors", 0)), int(base["samples"])
        c, b = k / n, bk / bn
        test = proportion_greater(bk, bn, k, n, reg.alpha, reg.min_samples)
        failing = (c - b) > threshold and bool(test.significant)
        text = (f"Error rate {b * 100:.2f}% ({bk}/{bn}) -> {c * 100:.2f}% ({k}/{n}); "
                f"{test.note}.")
        if failing:
            text += " " + error_sources(self.ix, ev.rows[ev.errors])
        r = Result(ev.slo.name, name, "regression", "fail" if failing else "pass", c,
                   threshold, "ratio", n, text, ev.slo.line, baseline=b, p_value=test.p_value,
                   significant=test.significant, change=num(c - b),
                   method=self.pairs.fallback_note(base) + " (Fisher exact)")
        if k:
            self.exemplars.point(r, int(ev.rows[ev.errors][0]))
        return self.pairs.said_fallback(r)

    def count(self, ev: SloEval, base: dict[str, Any], threshold: float, name: str,
              what: str) -> Result:
        """DB queries or runs of the most repeated statement, per request."""
        paired = self.pairs.value(ev, base, threshold, name, what)
        if paired is not None:
            return paired
        values = ev.counts.db_queries if what == "db_queries" else ev.counts.repeated
        bl = base.get(what) or {}
        cand = count_summary(values)
        worse = [s for s in ("p50", "max") if cand[s] - float(bl.get(s, 0.0)) > threshold]
        stat = worse[0] if worse else "max"
        noun = "DB queries" if what == "db_queries" else "runs of the most repeated statement"
        text = (f"{noun} per request: median {bl.get('p50', 0):g} -> {cand['p50']:g}, max "
                f"{bl.get('max', 0):g} -> {cand['max']:g}, mean {bl.get('mean', 0):.2f} -> "
                f"{cand['mean']:.2f}.")
        if worse:
            text += f" Increase beyond {threshold:g} fails. " + statement_changes(ev, base)
        row = ev.rows[int(np.argmax(values))]
        if stat == "p50":
            row = ev.rows[nearest(values.astype(np.float64), cand["p50"])]
        r = Result(ev.slo.name, name, "regression", "fail" if worse else "pass", cand[stat],
                   threshold, "count", ev.n, text, ev.slo.line, baseline=num(bl.get(stat)),
                   baseline_trace_id=(base.get("trace_ids") or {}).get("p50"),
                   change=num(cand[stat] - float(bl.get(stat, 0.0))), stat=stat,
                   method=self.pairs.fallback_note(base) + " (any increase of the median "
                   "or maximum beyond the threshold fails)")
        return self.pairs.said_fallback(self.exemplars.point(r, int(row)))


def welch_greater(base: dict[str, Any], cand: dict[str, Any], cand_n: int, base_n: int,
                  alpha: float, min_samples: int) -> TestResult:
    """Welch's t-test on means from summary statistics: catches slow-downs of the tail."""
    if base_n < min_samples or cand_n < min_samples or "mean" not in base:
        return TestResult(None, None, f"too few samples to test ({base_n} baseline, {cand_n} "
                          f"candidate; need {min_samples} each)")
    if base.get("std", 0) == 0 and cand.get("std", 0) == 0:
        sig = cand["mean"] > base["mean"]
        return TestResult(0.0 if sig else 1.0, sig, "no variance")
    from scipy import stats as sps

    res = sps.ttest_ind_from_stats(cand["mean"], cand["std"], cand_n, base["mean"],
                                   base["std"], base_n, equal_var=False, alternative="greater")
    p = float(res.pvalue)
    word = "significant" if p < alpha else "not significant"
    rel = "<" if p < alpha else ">="
    pt = f"p={p:.2g}" if p >= 1e-4 else "p<0.0001"
    return TestResult(p, p < alpha, f"{word} (Welch t-test, {pt} {rel} {alpha:g})")
