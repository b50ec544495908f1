"""Evaluating a spec over a span table (and a baseline) into the report dict.

The verdict is the product: every objective gets an observed value, its budget, a status,
the number of samples and an exemplar trace; every failure gets an explanation a person can
act on without opening a trace viewer. The heavy lifting over all spans is vectorized
(`slo.judge.tree.RunIndex`); only the handful of traces the report shows or explains are turned
into Python dicts.

Regressions against a baseline (a saved file or another run of the same store, both
summarised by `summarize_run`) follow the rules in `slo.judge.spec.Regression`: latency needs a
relative AND absolute slow-down AND statistical significance; counts fail on any increase
beyond the threshold of the per-request median or maximum; error rates need a significant
increase in proportion.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from slo import units
from slo.ingest.spans import COLUMNS
from slo.judge import completeness, explain, sqlnorm
from slo.judge.critical_path import self_times
from slo.judge.detectors import run_detectors
from slo.judge.spec import SLO, Objective, Spec
from slo.judge.stats import (
    BODY,
    MAX_SAMPLES,
    MIN_PAIRS,
    Change,
    TestResult,
    abba_pairs,
    detectable_note,
    downsample,
    holm,
    mann_whitney_greater,
    paired_change,
    percentile,
    proportion_greater,
    shift_or_tail,
    stat_of,
    tail_greater,
)
from slo.judge.traces import nearest, spread, subtree, trace_dict
from slo.judge.tree import CountStats, RunIndex, index_for


def prefetch_scipy() -> None:
    """Start importing scipy.stats (half a second) in the background: only a baseline
    comparison needs it, and loading a baseline comes just before reading the spans, whose
    Parquet decoding leaves the GIL free. The real import later waits for this one."""
    import importlib
    import threading

    def load() -> None:
        try:
            importlib.import_module("scipy.stats")
        except Exception:  # noqa: BLE001 - the real import, later, reports it
            pass

    threading.Thread(target=load, name="slo-import-scipy", daemon=True).start()


#: The span columns the check, the detectors and the reports read: the resource and event
#: JSON (the largest columns, read by nothing here) stay on disk.
CHECK_COLUMNS = [c for c in COLUMNS if c not in ("resource", "events")]
#: What the check holds in memory when the attributes can be read from the store on demand
#: (`source=`, a `slo.ingest.runsource.RunSource`): the attributes JSON is the largest column.
CORE_COLUMNS = [c for c in CHECK_COLUMNS if c != "attributes"]
#: Traces per SLO sampled (evenly over the latency ranks) to attribute latency.
ATTRIBUTION_TRACES = 40
REPORT_SAMPLES = 100_000  # latency samples in a report, all SLOs together (see report_samples)
#: Latency statistics compared against a baseline, in the order they are reported. Not p95
#: as well: it moves with p90 and every added comparison lowers the level each one is tested
#: at (Holm over the whole check), which costs more power than p95 adds.
REGRESSION_STATS = ("p50", "p90", "mean")
#: ... and over slice pairs, where the typical request is the band BODY (p5-p50) instead of
#: the median: a pure slow-down moves both alike, and the band's change has 0.55-0.65 times
#: the median's standard error on the SUT's latencies (see slo.judge.stats.BODY).
SLICE_STATS = (BODY, "p90", "mean")
#: Least (relative, ms) slow-down the request-level latency tests fail on: what they needed to
#: stay quiet on a shared box before the slices were used (issue 11); a spec's larger
#: threshold applies as it is.
REQUEST_LEVEL_FLOOR = (0.4, 3.0)
#: Values kept per slice and distribution in a baseline (order statistics, see downsample).
SLICE_SAMPLES = 500

REGRESSION_OBJECTIVES = {
    "latency": "latency_regression",
    "error_rate": "error_rate_regression",
    "db_queries": "db_queries_regression",
    "repeated_queries": "repeated_queries_regression",
}


# ---------------------------------------------------------------------------------------------
# Per-SLO evaluation over the whole run


@dataclass
class SloEval:
    slo: SLO
    rows: np.ndarray  # selected rows of the span table, sorted
    durations: np.ndarray  # ms, one per selected span
    errors: np.ndarray  # bool
    counts: CountStats
    span_counts: np.ndarray | None

    @property
    def n(self) -> int:
        return len(self.rows)


def evaluate(ix: RunIndex, slo: SLO) -> SloEval:
    rows = ix.select(slo.select)
    counts = ix.count_stats(rows)
    need_spans = any(o.name == "span_count" for o in slo.objectives)
    return SloEval(slo, rows, ix.duration_ms[rows], ix.is_error[rows], counts,
                   ix.span_counts(rows) if need_spans else None)


def _latency_summary(d: np.ndarray) -> dict[str, float]:
    if len(d) == 0:
        return {}
    return {"p50": percentile(d, 50), "p90": percentile(d, 90), "p95": percentile(d, 95),
            "p99": percentile(d, 99), "max": float(d.max()), "mean": float(d.mean()),
            "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0}


def _count_summary(c: np.ndarray) -> dict[str, float]:
    if len(c) == 0:
        return {}
    return {"p50": percentile(c, 50), "max": float(c.max()), "mean": float(c.mean())}


def slice_labels(ix: RunIndex, slices: Any) -> tuple[np.ndarray, list[str], list[int]]:
    """Per-row slice codes of a span table, the slice labels and each slice's first start.

    `slices` holds one label per row of the span table (the gate passes the slices' own run
    ids, read before it merges them into one run).
    """
    arr = pa.array(slices) if not isinstance(slices, (pa.Array, pa.ChunkedArray)) else slices
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if len(arr) != ix.n:
        raise ValueError(f"slices: {len(arr)} labels for {ix.n} spans")
    enc = pc.dictionary_encode(arr.cast(pa.string()))
    labels = [str(x) for x in enc.dictionary.to_pylist()]
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    start = ix.table.column("start_ns").to_numpy()
    first = np.full(len(labels), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, codes, start.astype(np.int64))
    return codes, labels, [int(x) for x in first]


def slice_summaries(ev: SloEval, codes: np.ndarray, n_slices: int) -> list[dict[str, Any]]:
    """Per slice of one SLO: its latencies, per-request counts, requests and errors."""
    mine = codes[ev.rows]
    out = []
    for k in range(n_slices):
        m = mine == k
        out.append({
            "n": int(m.sum()), "errors": int(ev.errors[m].sum()),
            "latency_ms": downsample(ev.durations[m], SLICE_SAMPLES),
            "db_queries": downsample(ev.counts.db_queries[m], SLICE_SAMPLES),
            "repeated_queries": downsample(ev.counts.repeated[m], SLICE_SAMPLES),
        })
    return out


def _subtree_traces(ix: RunIndex, ev: SloEval, trace_rows: dict[str, list[dict]],
                    picks: np.ndarray, role: str) -> list[dict[str, Any]]:
    """Compact trace dicts of the subtrees under the chosen selected spans."""
    out = []
    ids = ix.rows(ev.rows[picks], ["trace_id", "span_id"])
    for r in ids:
        rows = subtree(trace_rows.get(r["trace_id"], []), r["span_id"])
        if rows:
            out.append(trace_dict(rows, role, compact=True, with_critical=False))
    return out


def _attribution_picks(ev: SloEval) -> np.ndarray:
    return spread(np.argsort(ev.durations, kind="stable"), ATTRIBUTION_TRACES)


def summarize_slo(ix: RunIndex, ev: SloEval, trace_rows: dict[str, list[dict]]
                  ) -> dict[str, Any]:
    """What a baseline keeps of one SLO: distributions, counts, statements, a profile."""
    out: dict[str, Any] = {
        "select": ev.slo.select.as_dict(),
        "samples": ev.n,
        "errors": int(ev.errors.sum()),
        "latency": _latency_summary(ev.durations),
        "latency_ms": downsample(ev.durations, MAX_SAMPLES),
        "db_queries": _count_summary(ev.counts.db_queries),
        "repeated_queries": _count_summary(ev.counts.repeated),
        "statements": ev.counts.per_statement,
        "profile": None,
        "trace_ids": {},
    }
    if ev.span_counts is not None:
        out["span_count"] = _count_summary(ev.span_counts)
    if ev.n:
        out["profile"] = explain.profile(
            _subtree_traces(ix, ev, trace_rows, _attribution_picks(ev), "baseline"))
        tids = ix.column("trace_id").take(pa.array(ev.rows)).to_numpy(zero_copy_only=False)
        for stat in ("p50", "p90"):
            out["trace_ids"][stat] = str(tids[nearest(ev.durations, out["latency"][stat])])
    return out


def _needed_for_summary(ix: RunIndex, ev: SloEval) -> set[str]:
    if not ev.n:
        return set()
    rows = list(ev.rows[_attribution_picks(ev)])
    lat = _latency_summary(ev.durations)
    rows += [ev.rows[nearest(ev.durations, lat["p50"])], ev.rows[nearest(ev.durations,
                                                                          lat["p90"])]]
    return {r["trace_id"] for r in ix.rows(np.array(rows), ["trace_id"])}


def run_info(ix: RunIndex, run_id: str | None, run_meta: dict | None = None) -> dict[str, Any]:
    """The report's `run` block: id, time span, sizes, services, load figures if known."""
    t = ix.table
    info: dict[str, Any] = {"run_id": run_id, "start_ns": None, "end_ns": None,
                            "spans": t.num_rows, "traces": 0, "services": [], "load": None}
    if t.num_rows:
        info["start_ns"] = int(pc.min(t.column("start_ns")).as_py())
        info["end_ns"] = int(pc.max(t.column("end_ns")).as_py())
        info["traces"] = int(pc.count_distinct(t.column("trace_id")).as_py())
        info["services"] = sorted(s for s in ix.codes("service")[1] if s)
    if run_meta:
        info["load"] = run_meta.get("load", {k: run_meta[k] for k in
                                             ("users", "requests", "failures", "rps")
                                             if k in run_meta}) or None
    return info


def detect_run_id(spans: pa.Table) -> str | None:
    """The most common non-empty `run_id` of a span table (None if spans carry none)."""
    if spans.num_rows == 0:
        return None
    vc = pc.value_counts(spans.column("run_id").combine_chunks())
    best, best_n = None, -1
    for item in vc.to_pylist():
        if item["values"] and item["counts"] > best_n:
            best, best_n = item["values"], item["counts"]
    return best


def summarize_run(spec: Spec, spans: pa.Table, run_id: str | None = None,
                  run_meta: dict | None = None, *, ix: RunIndex | None = None,
                  slices: Any = None, source: Any = None) -> dict[str, Any]:
    """Everything a later comparison needs of a run, as JSON-able data (a baseline's body).

    With `slices` (one label per span: the gate's slice run ids) each SLO also keeps its
    values per slice, so a candidate interleaved with these slices is judged pair by pair.
    """
    ix = ix or index_for(spans, source)
    codes, labels, starts = slice_labels(ix, slices) if slices is not None else (None, [], [])
    run_id = run_id or detect_run_id(spans)
    evals = [evaluate(ix, s) for s in spec.slos]
    needed: set[str] = set()
    for ev in evals:
        needed |= _needed_for_summary(ix, ev)
    trace_rows = ix.trace_rows(needed)
    slos, traces = {}, {}
    for ev in evals:
        slos[ev.slo.name] = summarize_slo(ix, ev, trace_rows)
        if codes is not None:
            slos[ev.slo.name]["slices"] = slice_summaries(ev, codes, len(labels))
        for tid in slos[ev.slo.name]["trace_ids"].values():
            if tid not in traces and tid in trace_rows:
                traces[tid] = trace_dict(trace_rows[tid], "baseline")
    out: dict[str, Any] = {"run_id": run_id, "run": run_info(ix, run_id, run_meta), "slos": slos,
           "traces": traces}
    if codes is not None:
        out["slices"] = [{"id": lb, "start_ns": st} for lb, st in zip(labels, starts,
                                                                      strict=True)]
    return out


# ---------------------------------------------------------------------------------------------
# Formatting helpers


# ---------------------------------------------------------------------------------------------
# The check


def latency_comparisons(base: list[np.ndarray], cand: list[np.ndarray], threshold: float,
                        min_ms: float) -> list[tuple[str, Change, float]] | None:
    """(stat, change, margin) per REGRESSION_STATS over ABBA pairs; None: too few pairs.

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
                      ) -> list[tuple[str, Change, float]] | None:
    """The per-request mean (a count, or 0/1 for an error) as a difference; None: too few
    pairs. An N+1 adds queries to every request of every candidate slice: the difference is
    large against its pair-to-pair spread. A cache warming up adds them to the first slices
    only, on both sides or one: the spread between pairs is as large as the difference."""
    ch = paired_change(base, cand, "mean", "abs")
    return None if ch is None else [("mean", ch, float(threshold))]


def family_decisions(comps: list[tuple[str, Change, float]], alpha: float
                     ) -> tuple[list[float], list[tuple[bool, float]], int]:
    """p-values, (rejected, level) per comparison and the family size, for one check.

    A comparison whose data do not vary (a count that is the same in every request of every
    slice, no errors at all) cannot reject: leaving it out of the family, as Tarone's rule
    for discrete tests does, keeps alpha for the comparisons that can."""
    pvals = [ch.p_greater(margin) for _, ch, margin in comps]
    live = [n for n, (_, ch, _) in enumerate(comps) if ch.se > 0 or pvals[n] < 1]
    live_decided = dict(zip(live, holm([pvals[n] for n in live], alpha), strict=True))
    m = max(1, len(live))
    return pvals, [live_decided.get(n, (False, alpha / m)) for n in range(len(comps))], m


class _Check:
    def __init__(self, spec: Spec, spans: pa.Table, baseline: dict | None,
                 run_meta: dict | None, run_id: str | None, slices: Any = None,
                 source: Any = None):
        self.spec = spec
        self.ix = index_for(spans, source)
        # Slice-level comparisons: pairs (baseline slice, candidate slice) of the ABBA order,
        # when both sides come with slices that interleave (a gate's own baseline).
        self.pairs: list[tuple[int, int]] = []
        self.cand_codes: np.ndarray | None = None
        self.n_cand_slices = 0
        if slices is not None:
            self.cand_codes, labels, starts = slice_labels(self.ix, slices)
            self.n_cand_slices = len(labels)
            base_slices = (baseline or {}).get("slices") or []
            self.pairs = abba_pairs([int(b["start_ns"]) for b in base_slices], starts)
        self.pending: list[dict[str, Any]] = []  # slice comparisons, decided together (Holm)
        self.cand_slices: dict[str, list[dict[str, Any]]] = {}  # per SLO, its slices' values
        self.baseline = baseline
        self.run_id = run_id or (run_meta or {}).get("run_id") or detect_run_id(spans)
        self.run_meta = run_meta
        self.results: list[dict[str, Any]] = []
        self.need_traces: set[str] = set()
        self.trace_ids = self.ix.column("trace_id")
        self.span_ids = self.ix.column("span_id")
        load = (run_meta or {}).get("load") or run_meta or {}
        self.whole = completeness.assess(self.ix, load.get("requests"))

    def tid(self, row: int) -> str:
        return str(self.trace_ids[int(row)].as_py())

    def sid(self, row: int) -> str:
        return str(self.span_ids[int(row)].as_py())

    def result(self, slo: SLO, objective: str, kind: str, status: str, observed: Any,
               budget: Any, unit: str, samples: int, explanation: str,
               exemplar_row: int | None = None, **extra: Any) -> dict[str, Any]:
        r: dict[str, Any] = {"slo": slo.name, "objective": objective, "kind": kind, "status": status,
             "observed": _num(observed), "budget": _num(budget), "baseline": None,
             "unit": unit, "samples": samples, "explanation": explanation,
             "trace_id": None, "baseline_trace_id": None, "p_value": None,
             "significant": None, "contributions": [], "_row": exemplar_row,
             "change": None, "ci_low": None, "ci_high": None, "confidence": None,
             "method": None,
             "spec_line": slo.line}  # where SARIF points when no span names its code
        r.update(extra)
        if exemplar_row is not None:  # the exemplar: its trace, and the selected span in it
            r["trace_id"] = self.tid(exemplar_row)
            r["span_id"] = self.sid(exemplar_row)
            self.need_traces.add(r["trace_id"])
        self.results.append(r)
        return r

    # -- objectives ----------------------------------------------------------------------

    def no_data(self, ev: SloEval) -> str:
        sel = ev.slo.select
        what = ", ".join(f"{k}={v!r}" for k, v in sel.as_dict().items())
        msg = f"No span matched select ({what}) in run {self.run_id or '(all spans)'}"
        if self.ix.n == 0:
            return msg + ": the run has no spans at all."
        names = []
        if sel.service is not None:
            mask = self.ix.match("service", lambda v: v == sel.service)
            if not mask.any():
                services = [s for s in self.ix.codes("service")[1] if s]
                return msg + f": no spans from service {sel.service!r} (services seen: " \
                             f"{', '.join(sorted(services)[:10])})."
            codes, values = self.ix.codes("name")
            names = sorted({values[c] for c in np.unique(codes[mask])})
        if names and sel.span is not None:
            close = difflib.get_close_matches(sel.span, names, n=3, cutoff=0.5)
            shown = close or names[:5]
            return msg + f"; span names of that service include: " \
                         f"{', '.join(repr(n) for n in shown)}."
        return msg + "."

    def objective(self, ev: SloEval, o: Objective) -> None:
        slo = ev.slo
        if ev.n == 0:
            self.result(slo, o.name, "objective", "no_data", None, o.budget, o.unit, 0,
                        self.no_data(ev))
            return
        if o.percentile is not None:
            observed = percentile(ev.durations, o.percentile)
            worst = int(np.argmax(ev.durations))
            ok = observed <= o.budget
            label = "max" if o.percentile == 100 else f"p{o.percentile:g}"
            text = (f"{label} latency {units.duration_ms(observed)} "
                    f"{'within' if ok else 'over'} the {units.duration_ms(o.budget)} budget "
                    f"({ev.n} requests).")
            self.result(slo, o.name, "objective", "pass" if ok else "fail", observed,
                        o.budget, "ms", ev.n, text, ev.rows[worst], _explain_worst=not ok)
        elif o.name == "error_rate":
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
                    text += " " + self.error_sources(err_rows)
            self.result(slo, o.name, "objective", "pass" if ok else "fail", observed,
                        o.budget, "ratio", ev.n, text, ex)
        else:
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
                text += " " + self.top_statements(ev)
            self.result(slo, o.name, "objective", "pass" if ok else "fail", observed,
                        o.budget, "count", len(used), text, ev.rows[worst])

    def error_sources(self, err_rows: np.ndarray) -> str:
        msgs: Counter[str] = Counter()
        for r in self.ix.rows(err_rows[:500], ["status_message", "http_status_code"]):
            m = r["status_message"] or (f"HTTP {r['http_status_code']}"
                                        if r["http_status_code"] else "error status")
            msgs[m] += 1
        top = ", ".join(f"{m!r} x{n}" for m, n in msgs.most_common(3))
        return f"Most common: {top}."

    def top_statements(self, ev: SloEval) -> str:
        items = sorted(ev.counts.per_statement.items(), key=lambda kv: -kv[1]["mean"])[:3]
        parts = [f"{i['service']} `{sqlnorm.short(s)}` {i['mean']:.1f} per request (max "
                 f"{i['max']})" for s, i in items]
        return ("Statements: " + "; ".join(parts) + ".") if parts else ""

    # -- regressions ---------------------------------------------------------------------

    def regressions(self, ev: SloEval, base: dict[str, Any] | None) -> None:
        slo, reg = ev.slo, ev.slo.regression
        checks = [("latency", reg.latency), ("error_rate", reg.error_rate),
                  ("db_queries", reg.db_queries), ("repeated_queries", reg.repeated_queries)]
        for what, threshold in checks:
            if threshold is None:
                continue
            name = REGRESSION_OBJECTIVES[what]
            unit = {"latency": "ms", "error_rate": "ratio"}.get(what, "count")
            if ev.n == 0:
                self.result(slo, name, "regression", "no_data", None, threshold, unit, 0,
                            self.no_data(ev))
                continue
            if not base or not base.get("samples"):
                self.result(slo, name, "regression", "no_data", None, threshold, unit, ev.n,
                            f"The baseline has no samples of SLO {slo.name!r}: nothing to "
                            "compare with (re-record the baseline with this spec).")
                continue
            if base.get("select", slo.select.as_dict()) != slo.select.as_dict():
                self.result(slo, name, "regression", "no_data", None, threshold, unit, ev.n,
                            f"The baseline selected other spans for SLO {slo.name!r} "
                            f"({base['select']}, now {slo.select.as_dict()}): not comparable; "
                            "re-record the baseline with this spec.")
                continue
            getattr(self, f"regress_{what}")(ev, base, threshold, name)

    # -- slice-level comparisons (the gate's interleaved baseline) ----------------------

    def paired_values(self, ev: SloEval, base: dict, key: str) -> tuple[list, list] | None:
        """Per ABBA pair, the baseline's and the candidate's values of `key` for one SLO."""
        bsl = base.get("slices")
        if not self.pairs or self.cand_codes is None or not bsl:
            return None
        if ev.slo.name not in self.cand_slices:
            self.cand_slices[ev.slo.name] = slice_summaries(ev, self.cand_codes,
                                                            self.n_cand_slices)
        csl = self.cand_slices[ev.slo.name]

        def values(sl: dict) -> np.ndarray:
            if key == "errors":  # 0/1 per request
                return np.r_[np.ones(sl["errors"]), np.zeros(sl["n"] - sl["errors"])]
            return np.asarray(sl[key], np.float64)

        return ([values(bsl[i]) for i, _ in self.pairs],
                [values(csl[j]) for _, j in self.pairs])

    def said_fallback(self, r: dict[str, Any]) -> None:
        """A gate's check that could not pair slices for this comparison says so."""
        if self.cand_codes is not None:
            r["explanation"] += (f" Too few slices to judge by slice pairs (need {MIN_PAIRS} "
                                 "pairs with requests on both sides, interleaved with the "
                                 "baseline's): tested request by request.")

    def slice_fallback_note(self, base: dict) -> str:
        if self.cand_codes is None or not base.get("slices"):
            return "request-level: the baseline has no interleaved slices"
        return (f"request-level: too few slice pairs with requests on both sides (need "
                f"{MIN_PAIRS})")

    def regress_latency_slices(self, ev: SloEval, base: dict, threshold: float,
                               name: str) -> bool:
        """Latency by slice pairs; False when there are too few pairs (the caller falls back)."""
        got = self.paired_values(ev, base, "latency_ms")
        comps = got and latency_comparisons(*got, threshold, ev.slo.regression.latency_min_ms)
        if not comps:
            return False
        assert got is not None  # (comps is None without it)
        pooled_b, pooled_c = np.concatenate(got[0]), np.concatenate(got[1])
        pattern, share = shift_or_tail(pooled_b, pooled_c)
        r = self.result(ev.slo, name, "regression", "pass", None, threshold, "ms", ev.n, "",
                        None, pattern=pattern, affected_share=share)
        self.pending.append({"r": r, "ev": ev, "base": base, "what": "latency",
                             "comps": comps, "pooled": (pooled_b, pooled_c)})
        return True

    def regress_value_slices(self, ev: SloEval, base: dict, threshold: float, name: str,
                             what: str) -> bool:
        """Error rates and per-request counts by slice pairs: the mean, as a difference."""
        got = self.paired_values(ev, base, what)
        comps = got and value_comparisons(*got, threshold)
        if not comps:
            return False
        assert got is not None  # (comps is None without it)
        unit = "ratio" if what == "errors" else "count"
        r = self.result(ev.slo, name, "regression", "pass", None, threshold, unit, ev.n, "",
                        None)
        self.pending.append({"r": r, "ev": ev, "base": base, "what": what, "comps": comps,
                             "pooled": (np.concatenate(got[0]), np.concatenate(got[1]))})
        return True

    def decide_slices(self) -> None:
        """Holm over every slice comparison of the check, then each result's verdict.

        Decision by effect size: a comparison fails when the lower end of its interval (at
        the level Holm gives it) is above the threshold, i.e. when H0 "the change is at most
        the threshold" is rejected; alpha then bounds the chance that a check with no real
        change anywhere fails at all.
        """
        flat = [(k, i) for k, p in enumerate(self.pending) for i in range(len(p["comps"]))]
        if not flat:
            return
        alpha = min(p["ev"].slo.regression.alpha for p in self.pending)
        pvals, decided, m = family_decisions(
            [self.pending[k]["comps"][i] for k, i in flat], alpha)
        by_item: dict[int, list] = {}
        for (k, i), p, (rej, level) in zip(flat, pvals, decided, strict=True):
            st, ch, margin = self.pending[k]["comps"][i]
            lo, hi = ch.bounds(level)
            self.pending[k].setdefault("tested", []).append((ch, margin, level))
            by_item.setdefault(k, []).append({
                "stat": st, "change": _num(ch.natural(ch.estimate)),
                "ci_low": _num(ch.natural(lo)), "ci_high": _num(ch.natural(hi)),
                "threshold": _num(ch.natural(margin)), "p_value": _num(p),
                "confidence": _num(1 - 2 * level), "significant": rej, "pairs": ch.pairs})
        for k, item in enumerate(self.pending):
            comps = by_item[k]
            failing = [x for x in comps if x["significant"]]
            shown = min(failing or comps, key=lambda x: x["p_value"])
            if item["what"] == "latency":
                self.finish_latency(item, comps, shown, bool(failing), m, alpha)
            else:
                self.finish_value(item, shown, m, alpha)

    def _set_exemplar(self, r: dict, row: int) -> None:
        r["_row"] = row
        r["trace_id"] = self.tid(row)
        r["span_id"] = self.sid(row)
        self.need_traces.add(r["trace_id"])

    def finish_latency(self, item: dict, comps: list[dict], shown: dict, failing: bool,
                       m: int, alpha: float) -> None:
        r, ev, base = item["r"], item["ev"], item["base"]
        pooled_b, pooled_c = item["pooled"]
        reg = ev.slo.regression
        st = shown["stat"]
        b, c = stat_of(pooled_b, st), stat_of(pooled_c, st)
        parts = [f"{x['stat']} {units.duration_ms(stat_of(pooled_b, x['stat']))} -> "
                 f"{units.duration_ms(stat_of(pooled_c, x['stat']))}" for x in comps]
        limit = f"{r['budget'] * 100:g}% and {units.duration_ms(reg.latency_min_ms)}"
        pairs = shown["pairs"]
        text = (f"Latency {', '.join(parts)}; {units.result_change(shown, 'ms')} over "
                f"{pairs} slice pairs.")
        if failing:
            conf = units.confidence(shown["confidence"])
            text += (f" {st} slower by more than {limit} with {conf} "
                     f"confidence ({r['pattern']}: {r['affected_share'] * 100:.0f}% of "
                     f"requests slower).")
        else:
            text += (f" Not significant: no statistic is confidently slower by more than "
                     f"{limit} (Holm over {m} comparisons, alpha {alpha:g})."
                     + detectable_note(item["tested"], units.change))
        q = {"p50": 50, BODY: 25, "p90": 90, "p95": 95, "mean": 99}[st]
        self._set_exemplar(r, int(ev.rows[nearest(ev.durations, percentile(ev.durations, q))]))
        r.update(status="fail" if failing else "pass", observed=_num(c), baseline=_num(b),
                 explanation=text, p_value=shown["p_value"], significant=shown["significant"],
                 change=shown["change"], ci_low=shown["ci_low"], ci_high=shown["ci_high"],
                 confidence=shown["confidence"], stat=st, comparisons=comps,
                 method=f"slice pairs ({pairs} ABBA pairs, pair bootstrap SE, t interval, "
                        f"Holm over {m})",
                 baseline_trace_id=(base.get("trace_ids") or {}).get(
                     "p50" if st in ("p50", BODY) else "p90"),
                 _attribute=failing, _base=base)

    def finish_value(self, item: dict, shown: dict, m: int, alpha: float) -> None:
        r, ev, base, what = item["r"], item["ev"], item["base"], item["what"]
        pooled_b, pooled_c = item["pooled"]
        failing = bool(shown["significant"])
        b, c = float(pooled_b.mean()), float(pooled_c.mean())
        pairs = shown["pairs"]
        if what == "errors":
            text = (f"Error rate {b * 100:.2f}% -> {c * 100:.2f}%; "
                    f"{units.result_change(shown, 'ratio')} over {pairs} slice pairs.")
            limit = f"{r['budget'] * 100:g} percentage points"
        else:
            noun = ("DB queries" if what == "db_queries"
                    else "runs of the most repeated statement")
            text = (f"{noun} per request: mean {b:.2f} -> {c:.2f}; "
                    f"{units.result_change(shown, 'count')} over {pairs} slice pairs.")
            limit = f"{r['budget']:g} per request"
        if failing:
            text += f" More than {limit} with {units.confidence(shown['confidence'])} confidence."
            if what == "errors" and ev.errors.any():
                text += " " + self.error_sources(ev.rows[ev.errors])
            elif what != "errors":
                text += " " + self.statement_changes(ev, base)
        else:
            text += (f" Not significant: not confidently more than {limit} (Holm over {m} "
                     f"comparisons, alpha {alpha:g})." + detectable_note(
                         item["tested"], units.points if what == "errors" else "{:+.2f}".format))
        if what == "errors":
            if ev.errors.any():
                self._set_exemplar(r, int(ev.rows[ev.errors][0]))
        else:
            values = ev.counts.db_queries if what == "db_queries" else ev.counts.repeated
            self._set_exemplar(r, int(ev.rows[int(np.argmax(values))]))
            r["baseline_trace_id"] = (base.get("trace_ids") or {}).get("p50")
        r.update(status="fail" if failing else "pass", observed=_num(c), baseline=_num(b),
                 explanation=text, p_value=shown["p_value"], significant=failing,
                 change=shown["change"], ci_low=shown["ci_low"], ci_high=shown["ci_high"],
                 confidence=shown["confidence"], stat="mean",
                 method=f"slice pairs ({pairs} ABBA pairs, mean per request, pair bootstrap "
                        f"SE, t interval, Holm over {m})")

    # -- request-level comparisons (a saved baseline) -------------------------------------

    def regress_latency(self, ev: SloEval, base: dict, threshold: float, name: str) -> None:
        if self.regress_latency_slices(ev, base, threshold, name):
            return
        reg = ev.slo.regression
        # Without interleaved slices the two sides saw different machines: a change smaller
        # than the noise between runs cannot be told from it, so the request-level tests use
        # the thresholds they were tuned with at least (REQUEST_LEVEL_FLOOR).
        threshold = max(threshold, REQUEST_LEVEL_FLOOR[0])
        min_ms = max(reg.latency_min_ms, REQUEST_LEVEL_FLOOR[1])
        cand = _latency_summary(ev.durations)
        bl = base.get("latency") or {}
        b_samples = np.asarray(base.get("latency_ms") or [], np.float64)
        mwu = mann_whitney_greater(b_samples, ev.durations, reg.alpha, reg.min_samples)
        welch = _welch_greater(bl, cand, ev.n, int(base["samples"]), reg.alpha,
                               reg.min_samples)
        tail = tail_greater(b_samples, ev.durations, 90.0, reg.alpha)
        tests = {"p50": mwu, "p90": tail, "mean": welch}
        failing, exceeded, parts = None, [], []
        for stat in REGRESSION_STATS:
            b, c = bl.get(stat), cand.get(stat)
            if b is None or c is None:
                continue
            rel = (c - b) / b if b > 0 else (math.inf if c > 0 else 0.0)
            test = tests[stat]
            parts.append(f"{stat} {units.duration_ms(b)} -> {units.duration_ms(c)} ({units.change(rel) if b > 0 else 'new'})")
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
        r = self.result(ev.slo, name, "regression", "fail" if failing else "pass", c, threshold,
                    "ms", ev.n, text, int(row), baseline=_num(b), baseline_trace_id=btid,
                    p_value=test.p_value, significant=test.significant,
                    _attribute=bool(failing), _base=base,
                    change=_num((c - b) / b) if b and c is not None and b > 0 else None,
                    stat=stat, method=self.slice_fallback_note(base) + " (Mann-Whitney U, "
                    "Fisher tail, Welch; each at alpha, first significant fails; slower by at least "
                    f"{REQUEST_LEVEL_FLOOR[0] * 100:g}% and {REQUEST_LEVEL_FLOOR[1]:g} ms)",
                    **dict(zip(("pattern", "affected_share"),
                               shift_or_tail(b_samples, ev.durations), strict=True)))
        self.said_fallback(r)

    def regress_error_rate(self, ev: SloEval, base: dict, threshold: float, name: str) -> None:
        if self.regress_value_slices(ev, base, threshold, name, "errors"):
            return
        reg = ev.slo.regression
        k, n = int(ev.errors.sum()), ev.n
        bk, bn = int(base.get("errors", 0)), int(base["samples"])
        c, b = k / n, bk / bn
        test = proportion_greater(bk, bn, k, n, reg.alpha, reg.min_samples)
        failing = (c - b) > threshold and bool(test.significant)
        text = (f"Error rate {b * 100:.2f}% ({bk}/{bn}) -> {c * 100:.2f}% ({k}/{n}); "
                f"{test.note}.")
        if failing:
            text += " " + self.error_sources(ev.rows[ev.errors])
        ex = int(ev.rows[ev.errors][0]) if k else None
        r = self.result(ev.slo, name, "regression", "fail" if failing else "pass", c, threshold,
                    "ratio", n, text, ex, baseline=b, p_value=test.p_value,
                    significant=test.significant, change=_num(c - b),
                    method=self.slice_fallback_note(base) + " (Fisher exact)")
        self.said_fallback(r)

    def _regress_count(self, ev: SloEval, base: dict, threshold: float, name: str,
                       what: str, values: np.ndarray) -> None:
        if self.regress_value_slices(ev, base, threshold, name, what):
            return
        bl = base.get(what) or {}
        cand = _count_summary(values)
        worse = [s for s in ("p50", "max") if cand[s] - float(bl.get(s, 0.0)) > threshold]
        stat = worse[0] if worse else "max"
        noun = "DB queries" if what == "db_queries" else "runs of the most repeated statement"
        text = (f"{noun} per request: median {bl.get('p50', 0):g} -> {cand['p50']:g}, max "
                f"{bl.get('max', 0):g} -> {cand['max']:g}, mean {bl.get('mean', 0):.2f} -> "
                f"{cand['mean']:.2f}.")
        if worse:
            text += f" Increase beyond {threshold:g} fails. " + self.statement_changes(
                ev, base)
        row = ev.rows[int(np.argmax(values))]
        if stat == "p50":
            row = ev.rows[nearest(values.astype(np.float64), cand["p50"])]
        r = self.result(ev.slo, name, "regression", "fail" if worse else "pass", cand[stat],
                    threshold, "count", ev.n, text, int(row),
                    baseline=_num(bl.get(stat)),
                    baseline_trace_id=(base.get("trace_ids") or {}).get("p50"),
                    change=_num(cand[stat] - float(bl.get(stat, 0.0))), stat=stat,
                    method=self.slice_fallback_note(base) + " (any increase of the median "
                    "or maximum beyond the threshold fails)")
        self.said_fallback(r)

    def regress_db_queries(self, ev: SloEval, base: dict, threshold: float, name: str) -> None:
        self._regress_count(ev, base, threshold, name, "db_queries", ev.counts.db_queries)

    def regress_repeated_queries(self, ev: SloEval, base: dict, threshold: float,
                                 name: str) -> None:
        self._regress_count(ev, base, threshold, name, "repeated_queries", ev.counts.repeated)

    def statement_changes(self, ev: SloEval, base: dict) -> str:
        before = base.get("statements") or {}
        rows = []
        for stmt, c in ev.counts.per_statement.items():
            b = before.get(stmt, {"mean": 0.0, "max": 0})
            if c["mean"] > b["mean"] + 0.05 or c["max"] > b["max"]:
                rows.append((c["mean"] - b["mean"], c["max"] - b["max"], stmt, b, c))
        if not rows:
            return "No single statement runs more often; the added queries are spread out."
        rows.sort(key=lambda r: (-r[0], -r[1], r[2]))
        parts = []
        for _, _, stmt, b, c in rows[:3]:
            parts.append(f"{c.get('service', '')} `{sqlnorm.short(stmt)}` now runs "
                         f"{c['mean']:.2f} times per request, max {c['max']} (baseline "
                         f"{b['mean']:.2f}, max {b['max']})")
        return "; ".join(parts) + "."

    # -- explanations needing traces -----------------------------------------------------

    def attribution(self, ev: SloEval, base: dict | None,
                    trace_rows: dict[str, list[dict]]) -> list[dict[str, Any]] | None:
        if not base or not base.get("profile"):
            return None
        picks = _attribution_picks(ev)
        cand = explain.profile(_subtree_traces(self.ix, ev, trace_rows, picks, "candidate"))
        return explain.attribute_profiles(base["profile"], cand, top=5)

    def worst_sentence(self, trace: dict[str, Any]) -> str:
        times = self_times(trace)
        if not times:
            return ""
        spans = {s["span_id"]: s for s in trace["spans"]}
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
        return (f"Worst trace {trace['trace_id'][:12]}… ({units.duration_ms(trace['duration_ms'])}): "
                f"most critical-path time in " + ", then ".join(parts) + ".")

    # -- driver --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        spec, ix = self.spec, self.ix
        # The detectors are DuckDB queries, which run without the GIL: in a second thread
        # they overlap the numpy work below instead of following it.
        pool = ThreadPoolExecutor(1, thread_name_prefix="slo-detectors")
        detecting = pool.submit(run_detectors, ix.table, spec.detectors,
                                sql=ix.source.sql if ix.source is not None else None)
        pool.shutdown(wait=False)
        evals = [evaluate(ix, s) for s in spec.slos]
        base_slos = (self.baseline or {}).get("slos") or {}
        for ev in evals:
            for o in ev.slo.objectives:
                self.objective(ev, o)
                self.results[-1]["spec_line"] = o.line or ev.slo.line
                self.results[-1]["baseline"] = _baseline_value(
                    base_slos.get(ev.slo.name) if self.baseline else None, o)
            if self.baseline is not None:
                self.regressions(ev, base_slos.get(ev.slo.name))
        self.decide_slices()
        findings = detecting.result()
        if self.whole.detected:  # a sampled run cuts traces: that is not a propagation bug
            for f in findings:
                if f["detector"] == "broken_trace":
                    f["fails"] = False
                    f["message"] += (" (not failing: the run is sampled, and sampling cuts "
                                     "traces too)")
        for f in findings:  # the evidence, and the other half of a split trace
            for key, value in f.items():
                if key.endswith("trace_id") and isinstance(value, str) and value:
                    self.need_traces.add(value)
        by_name = {ev.slo.name: ev for ev in evals}
        attribute = [r for r in self.results if r.get("_attribute")]
        shown = set(self.need_traces)
        for r in attribute:
            ev = by_name[r["slo"]]
            picks = _attribution_picks(ev)
            self.need_traces |= {x["trace_id"] for x in ix.rows(ev.rows[picks], ["trace_id"])}
        trace_rows = ix.trace_rows(self.need_traces)
        traces = {tid: trace_dict(trace_rows[tid], "candidate")
                  for tid in sorted(shown) if trace_rows.get(tid)}
        for r in attribute:
            contributions = self.attribution(by_name[r["slo"]], r["_base"], trace_rows)
            if contributions:
                r["contributions"] = contributions
                r["explanation"] += " " + explain.describe(contributions)
        for r in self.results:
            if r.pop("_explain_worst", False) and r["trace_id"] in traces:
                sentence = self.worst_sentence(traces[r["trace_id"]])
                if sentence:
                    r["explanation"] += " " + sentence
            r.pop("_row", None)
            r.pop("_attribute", None)
            r.pop("_base", None)
        if self.baseline:
            for tid, t in (self.baseline.get("traces") or {}).items():
                traces.setdefault(tid, dict(t, role="baseline"))
        failed = any(r["status"] != "pass" for r in self.results) or \
            any(f.get("fails") for f in findings)
        base_slos = (self.baseline or {}).get("slos") or {}
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
            "results": self.results,
            "findings": findings,
            "slos": [self.slo_block(ev, base_slos.get(ev.slo.name)) for ev in evals],
            "traces": traces,
        }

    @property
    def report_samples(self) -> int:
        """Latency samples per SLO in the report: MAX_SAMPLES up to 50 SLOs, then fewer, so
        the report (JSON, HTML charts) stays ~100k samples however many SLOs there are."""
        return max(200, min(MAX_SAMPLES, REPORT_SAMPLES // max(len(self.spec.slos), 1)))

    def slo_block(self, ev: SloEval, base: dict | None) -> dict[str, Any]:
        return {
            "name": ev.slo.name,
            "select": ev.slo.select.as_dict(),
            "samples": ev.n,
            "latency_ms": {"candidate": downsample(ev.durations, self.report_samples),
                           "baseline": (base or {}).get("latency_ms") if self.baseline
                           else None},
            "budgets_ms": {o.name: o.budget for o in ev.slo.objectives if o.unit == "ms"},
        }


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else (round(v, 6) if math.isfinite(v) else None)


def _baseline_value(base: dict | None, o: Objective) -> float | None:
    """The objective's value in the baseline run, for context beside the budget."""
    if not base or not base.get("samples"):
        return None
    if o.percentile is not None:
        key = "max" if o.percentile == 100 else f"p{o.percentile:g}"
        return _num((base.get("latency") or {}).get(key))
    if o.name == "error_rate":
        return _num(base.get("errors", 0) / base["samples"])
    return _num((base.get(o.name) or {}).get("max"))


def _welch_greater(base: dict, cand: dict, cand_n: int, base_n: int, alpha: float,
                   min_samples: int) -> TestResult:
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


def run_check(spec: Spec, spans: pa.Table, baseline: dict | None = None,
              run_meta: dict | None = None, *, run_id: str | None = None,
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
