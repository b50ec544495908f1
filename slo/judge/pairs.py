"""Regressions judged over ABBA slice pairs: the gate's interleaved baseline and candidate.

A gate alternates the two sides in slices (B C C B B C ...), so each pair of neighbouring
slices shared the machine's mood; comparing pair by pair takes that noise out. Every
comparison of the whole check (every SLO, every statistic) is decided together with Holm,
by effect size: a comparison fails when its interval, at the level Holm gives it, lies above
the threshold. With too few pairs the caller falls back to `slo.judge.regressions`'
request-level tests, and the result's `method` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slo import units
from slo.judge.causes import error_sources, statement_changes
from slo.judge.exemplars import Exemplars
from slo.judge.results import Result, num
from slo.judge.stats import (
    BODY,
    MIN_PAIRS,
    Change,
    abba_pairs,
    detectable_note,
    holm,
    paired_change,
    percentile,
    shift_or_tail,
    stat_of,
)
from slo.judge.summary import SloEval, slice_labels, slice_summaries
from slo.judge.traces import nearest
from slo.judge.tree import RunIndex

#: Latency statistics compared against a baseline, in the order they are reported. Not p95
#: as well: it moves with p90 and every added comparison lowers the level each one is tested
#: at (Holm over the whole check), which costs more power than p95 adds.
REGRESSION_STATS = ("p50", "p90", "mean")
#: ... and over slice pairs, where the typical request is the band BODY (p5-p50) instead of
#: the median: a pure slow-down moves both alike, and the band's change has 0.55-0.65 times
#: the median's standard error on the SUT's latencies (see slo.judge.stats.BODY).
SLICE_STATS = (BODY, "p90", "mean")
#: Each latency statistic's share of the check's alpha (weighted Holm; counts and errors
#: weigh 1). The typical request carries most of it: it is what a general slow-down moves,
#: with the smallest standard error; p90 and mean are there for the tail, which moves by
#: far more than the threshold when it moves at all, and their intervals are the ones a
#: busy machine's bursts fool most often (bench/sensitivity.py). The weights of an SLO add
#: up to its number of comparisons, as without weights.
LATENCY_WEIGHTS = {BODY: 2.0, "p90": 0.5, "mean": 0.5}

#: (statistic, change, margin) of one comparison.
Comparison = tuple[str, Change, float]


def latency_comparisons(base: list[np.ndarray], cand: list[np.ndarray], threshold: float,
                        min_ms: float) -> list[Comparison] | None:
    """(stat, change, margin) per SLICE_STATS over ABBA pairs; None: too few pairs.

    The margin is on the log scale: slower by more than `threshold` (relative) AND by more
    than `min_ms` at the baseline's value of that statistic."""
    changes = {st: paired_change(base, cand, st, "log") for st in SLICE_STATS}
    if any(ch is None for ch in changes.values()):
        return None
    pooled = np.concatenate(base)
    out = []
    for st, ch in changes.items():
        assert ch is not None  # (checked above)
        b0 = stat_of(pooled, st)
        margin = math.log1p(threshold)
        if b0 > 0:
            margin = max(margin, math.log1p(min_ms / b0))
        out.append((st, ch, margin))
    return out


def value_comparisons(base: list[np.ndarray], cand: list[np.ndarray], threshold: float
                      ) -> list[Comparison] | None:
    """The per-request mean (a count, or 0/1 for an error) as a difference; None: too few
    pairs. An N+1 adds queries to every request of every candidate slice: the difference is
    large against its pair-to-pair spread. A cache warming up adds them to the first slices
    only, on both sides or one: the spread between pairs is as large as the difference."""
    ch = paired_change(base, cand, "mean", "abs")
    return None if ch is None else [("mean", ch, float(threshold))]


def weight(what: str, stat: str) -> float:
    """A comparison's share of the check's alpha (weighted Holm), relative to the others."""
    return LATENCY_WEIGHTS.get(stat, 1.0) if what == "latency" else 1.0


def can_reject(ch: Change, p_value: float) -> bool:
    """Whether a comparison belongs in the check's family: its data vary, or its p-value
    is below 1 (see `family_decisions`)."""
    return ch.se > 0 or p_value < 1


def family_decisions(comps: list[Comparison], alpha: float,
                     weights: list[float] | None = None
                     ) -> tuple[list[float], list[tuple[bool, float]], int]:
    """p-values, (rejected, level) per comparison and the family size, for one check.

    A comparison whose data do not vary (a count that is the same in every request of every
    slice, no errors at all) cannot reject: leaving it out of the family, as Tarone's rule
    for discrete tests does, keeps alpha for the comparisons that can. `weights`: each
    comparison's share of alpha (`weight`), default equal."""
    pvals = [ch.p_greater(margin) for _, ch, margin in comps]
    w = weights or [1.0] * len(comps)
    live = [n for n, (_, ch, _) in enumerate(comps) if can_reject(ch, pvals[n])]
    live_decided = dict(zip(live, holm([pvals[n] for n in live], alpha, [w[n] for n in live]),
                            strict=True))
    m = max(1, len(live))
    total = sum(w[n] for n in live) or 1.0
    return pvals, [live_decided.get(n, (False, alpha * w[n] / total))
                   for n in range(len(comps))], m


@dataclass
class _Pending:
    """A slice-pair regression waiting for the check's Holm decision."""

    result: Result
    ev: SloEval
    base: dict[str, Any]
    what: str  # "latency" | "errors" | "db_queries" | "repeated_queries"
    comps: list[Comparison]
    pooled: tuple[np.ndarray, np.ndarray]  # baseline, candidate values of every pair
    #: (change, margin, Holm level) of each comparison once decided: what a pass could have seen
    tested: list[tuple[Change, float, float]] = field(default_factory=list)


class SlicePairs:
    """The slice-pair comparisons of one check: set up, collected, then decided together."""

    def __init__(self, ix: RunIndex, baseline: dict[str, Any] | None, slices: Any,
                 exemplars: Exemplars):
        self.exemplars = exemplars
        # Pairs (baseline slice, candidate slice) of the ABBA order, when both sides come
        # with slices that interleave (a gate's own baseline).
        self.pairs: list[tuple[int, int]] = []
        self.cand_codes: np.ndarray | None = None
        self.n_cand_slices = 0
        self.ix = ix
        if slices is not None:
            self.cand_codes, labels, starts = slice_labels(ix, slices)
            self.n_cand_slices = len(labels)
            base_slices = (baseline or {}).get("slices") or []
            self.pairs = abba_pairs([int(b["start_ns"]) for b in base_slices], starts)
        self.pending: list[_Pending] = []
        self.cand_slices: dict[str, list[dict[str, Any]]] = {}  # per SLO, its slices' values

    # -- what the request-level fallback says --------------------------------------------

    def said_fallback(self, r: Result) -> Result:
        """A gate's check that could not pair slices for this comparison says so."""
        if self.cand_codes is not None:
            r.explanation += (f" Too few slices to judge by slice pairs (need {MIN_PAIRS} "
                              "pairs with requests on both sides, interleaved with the "
                              "baseline's): tested request by request.")
        return r

    def fallback_note(self, base: dict[str, Any]) -> str:
        """Why a comparison is request-level (the start of its `method`)."""
        if self.cand_codes is None or not base.get("slices"):
            return "request-level: the baseline has no interleaved slices"
        return (f"request-level: too few slice pairs with requests on both sides (need "
                f"{MIN_PAIRS})")

    # -- collecting ----------------------------------------------------------------------

    def paired_values(self, ev: SloEval, base: dict[str, Any], key: str
                      ) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
        """Per ABBA pair, the baseline's and the candidate's values of `key` for one SLO."""
        bsl = base.get("slices")
        if not self.pairs or self.cand_codes is None or not bsl:
            return None
        if ev.slo.name not in self.cand_slices:
            self.cand_slices[ev.slo.name] = slice_summaries(ev, self.cand_codes,
                                                            self.n_cand_slices)
        csl = self.cand_slices[ev.slo.name]

        def values(sl: dict[str, Any]) -> np.ndarray:
            if key == "errors":  # 0/1 per request
                return np.concatenate([np.ones(sl["errors"]), np.zeros(sl["n"] - sl["errors"])])
            return np.asarray(sl[key], np.float64)

        return ([values(bsl[i]) for i, _ in self.pairs],
                [values(csl[j]) for _, j in self.pairs])

    def latency(self, ev: SloEval, base: dict[str, Any], threshold: float, name: str
                ) -> Result | None:
        """Latency by slice pairs, decided later; None: too few pairs (fall back)."""
        got = self.paired_values(ev, base, "latency_ms")
        comps = got and latency_comparisons(*got, threshold, ev.slo.regression.latency_min_ms)
        if not comps:
            return None
        assert got is not None  # (comps is None without it)
        pooled_b, pooled_c = np.concatenate(got[0]), np.concatenate(got[1])
        pattern, share = shift_or_tail(pooled_b, pooled_c)
        r = Result(ev.slo.name, name, "regression", "pass", None, threshold, "ms", ev.n, "",
                   ev.slo.line, pattern=pattern, affected_share=share)
        self.pending.append(_Pending(r, ev, base, "latency", comps, (pooled_b, pooled_c)))
        return r

    def value(self, ev: SloEval, base: dict[str, Any], threshold: float, name: str,
              what: str) -> Result | None:
        """Error rates and per-request counts by slice pairs: the mean, as a difference;
        decided later; None: too few pairs (fall back)."""
        got = self.paired_values(ev, base, what)
        comps = got and value_comparisons(*got, threshold)
        if not comps:
            return None
        assert got is not None  # (comps is None without it)
        unit = "ratio" if what == "errors" else "count"
        r = Result(ev.slo.name, name, "regression", "pass", None, threshold, unit, ev.n, "",
                   ev.slo.line)
        self.pending.append(_Pending(r, ev, base, what, comps,
                                     (np.concatenate(got[0]), np.concatenate(got[1]))))
        return r

    # -- deciding ------------------------------------------------------------------------

    def decide(self) -> None:
        """Weighted Holm over every slice comparison of the check (LATENCY_WEIGHTS), then
        each result's verdict.

        Decision by effect size: a comparison fails when the lower end of its interval (at
        the level Holm gives it) is above the threshold, i.e. when H0 "the change is at most
        the threshold" is rejected; alpha then bounds the chance that a check with no real
        change anywhere fails at all.
        """
        flat = [(k, i) for k, p in enumerate(self.pending) for i in range(len(p.comps))]
        if not flat:
            return
        alpha = min(p.ev.slo.regression.alpha for p in self.pending)
        family = [self.pending[k].comps[i] for k, i in flat]
        weights = [weight(self.pending[k].what, st)
                   for (k, _), (st, _, _) in zip(flat, family, strict=True)]
        pvals, decided, m = family_decisions(family, alpha, weights)
        by_item: dict[int, list[dict[str, Any]]] = {}
        for (k, i), p, (rej, level) in zip(flat, pvals, decided, strict=True):
            st, ch, margin = self.pending[k].comps[i]
            lo, hi = ch.bounds(level)
            self.pending[k].tested.append((ch, margin, level))
            by_item.setdefault(k, []).append({
                "stat": st, "change": num(ch.natural(ch.estimate)),
                "ci_low": num(ch.natural(lo)), "ci_high": num(ch.natural(hi)),
                "threshold": num(ch.natural(margin)), "p_value": num(p),
                "confidence": num(1 - 2 * level), "significant": rej, "pairs": ch.pairs})
        for k, item in enumerate(self.pending):
            comps = by_item[k]
            failing = [x for x in comps if x["significant"]]
            shown = min(failing or comps, key=lambda x: x["p_value"])
            if item.what == "latency":
                self._finish_latency(item, comps, shown, bool(failing), m, alpha)
            else:
                self._finish_value(item, shown, m, alpha)

    @staticmethod
    def _take(r: Result, shown: dict[str, Any]) -> None:
        """The shown comparison's test and interval become the result's."""
        r.p_value, r.significant = shown["p_value"], shown["significant"]
        r.change, r.ci_low, r.ci_high = shown["change"], shown["ci_low"], shown["ci_high"]
        r.confidence = shown["confidence"]

    def _finish_latency(self, item: _Pending, comps: list[dict[str, Any]],
                        shown: dict[str, Any], failing: bool, m: int, alpha: float) -> None:
        r, ev, base = item.result, item.ev, item.base
        pooled_b, pooled_c = item.pooled
        reg = ev.slo.regression
        st = shown["stat"]
        b, c = stat_of(pooled_b, st), stat_of(pooled_c, st)
        parts = [f"{x['stat']} {units.duration_ms(stat_of(pooled_b, x['stat']))} -> "
                 f"{units.duration_ms(stat_of(pooled_c, x['stat']))}" for x in comps]
        assert r.budget is not None and r.affected_share is not None
        limit = f"{r.budget * 100:g}% and {units.duration_ms(reg.latency_min_ms)}"
        pairs = shown["pairs"]
        text = (f"Latency {', '.join(parts)}; {units.result_change(shown, 'ms')} over "
                f"{pairs} slice pairs.")
        if failing:
            conf = units.confidence(shown["confidence"])
            text += (f" {st} slower by more than {limit} with {conf} "
                     f"confidence ({r.pattern}: {r.affected_share * 100:.0f}% of "
                     f"requests slower).")
        else:
            text += (f" Not significant: no statistic is confidently slower by more than "
                     f"{limit} (weighted Holm over {m} comparisons, alpha {alpha:g})."
                     + detectable_note(item.tested, units.change))
        # the exemplar shows the slow-down: at the percentile, deep in the tail for the mean
        q = {"p50": 50, BODY: 25, "p90": 90, "p95": 95, "mean": 99}[st]
        self.exemplars.point(r, int(ev.rows[nearest(ev.durations,
                                                    percentile(ev.durations, q))]))
        r.status = "fail" if failing else "pass"
        r.observed, r.baseline, r.explanation = num(c), num(b), text
        self._take(r, shown)
        r.stat, r.comparisons = st, comps
        r.method = (f"slice pairs ({pairs} ABBA pairs, pair bootstrap SE, t interval, "
                    f"weighted Holm over {m})")
        r.baseline_trace_id = (base.get("trace_ids") or {}).get(
            "p50" if st in ("p50", BODY) else "p90")
        r.attribute, r.base = failing, base

    def _finish_value(self, item: _Pending, shown: dict[str, Any], m: int, alpha: float
                      ) -> None:
        r, ev, base, what = item.result, item.ev, item.base, item.what
        pooled_b, pooled_c = item.pooled
        failing = bool(shown["significant"])
        b, c = float(pooled_b.mean()), float(pooled_c.mean())
        pairs = shown["pairs"]
        assert r.budget is not None
        if what == "errors":
            text = (f"Error rate {b * 100:.2f}% -> {c * 100:.2f}%; "
                    f"{units.result_change(shown, 'ratio')} over {pairs} slice pairs.")
            limit = f"{r.budget * 100:g} percentage points"
        else:
            noun = ("DB queries" if what == "db_queries"
                    else "runs of the most repeated statement")
            text = (f"{noun} per request: mean {b:.2f} -> {c:.2f}; "
                    f"{units.result_change(shown, 'count')} over {pairs} slice pairs.")
            limit = f"{r.budget:g} per request"
        if failing:
            text += f" More than {limit} with {units.confidence(shown['confidence'])} confidence."
            if what == "errors" and ev.errors.any():
                text += " " + error_sources(self.ix, ev.rows[ev.errors])
            elif what != "errors":
                text += " " + statement_changes(ev, base)
        else:
            text += (f" Not significant: not confidently more than {limit} (weighted Holm over {m} "
                     f"comparisons, alpha {alpha:g})." + detectable_note(
                         item.tested, units.points if what == "errors" else "{:+.2f}".format))
        if what == "errors":
            if ev.errors.any():
                self.exemplars.point(r, int(ev.rows[ev.errors][0]))
        else:
            values = ev.counts.db_queries if what == "db_queries" else ev.counts.repeated
            self.exemplars.point(r, int(ev.rows[int(np.argmax(values))]))
            r.baseline_trace_id = (base.get("trace_ids") or {}).get("p50")
        r.status = "fail" if failing else "pass"
        r.observed, r.baseline, r.explanation = num(c), num(b), text
        self._take(r, shown)
        r.significant = failing
        r.stat = "mean"
        r.method = (f"slice pairs ({pairs} ABBA pairs, mean per request, pair bootstrap "
                    f"SE, t interval, weighted Holm over {m})")
