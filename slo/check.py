"""Evaluating a spec over a span table (and a baseline) into the report dict.

The verdict is the product: every objective gets an observed value, its budget, a status,
the number of samples and an exemplar trace; every failure gets an explanation a person can
act on without opening a trace viewer. The heavy lifting over all spans is vectorized
(`slo.tree.RunIndex`); only the handful of traces the report shows or explains are turned
into Python dicts.

Regressions against a baseline (a saved file or another run of the same store, both
summarised by `summarize_run`) follow the rules in `slo.spec.Regression`: latency needs a
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

from slo import completeness, explain, sqlnorm
from slo.critical_path import self_times
from slo.detectors import run_detectors
from slo.spec import SLO, Objective, Spec
from slo.stats import (
    MAX_SAMPLES,
    TestResult,
    downsample,
    mann_whitney_greater,
    percentile,
    proportion_greater,
    tail_greater,
)
from slo.traces import nearest, spread, subtree, trace_dict
from slo.tree import CountStats, RunIndex, index_for


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


#: Traces per SLO sampled (evenly over the latency ranks) to attribute latency.
ATTRIBUTION_TRACES = 40
REPORT_SAMPLES = 100_000  # latency samples in a report, all SLOs together (see report_samples)
#: Latency statistics compared against a baseline, in the order they are reported.
REGRESSION_STATS = ("p50", "p90", "mean")

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
                  run_meta: dict | None = None, *, ix: RunIndex | None = None
                  ) -> dict[str, Any]:
    """Everything a later comparison needs of a run, as JSON-able data (a baseline's body)."""
    ix = ix or index_for(spans)
    run_id = run_id or detect_run_id(spans)
    evals = [evaluate(ix, s) for s in spec.slos]
    needed: set[str] = set()
    for ev in evals:
        needed |= _needed_for_summary(ix, ev)
    trace_rows = ix.trace_rows(needed)
    slos, traces = {}, {}
    for ev in evals:
        slos[ev.slo.name] = summarize_slo(ix, ev, trace_rows)
        for tid in slos[ev.slo.name]["trace_ids"].values():
            if tid not in traces and tid in trace_rows:
                traces[tid] = trace_dict(trace_rows[tid], "baseline")
    return {"run_id": run_id, "run": run_info(ix, run_id, run_meta), "slos": slos,
            "traces": traces}


# ---------------------------------------------------------------------------------------------
# Formatting helpers


def fmt_ms(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if v >= 100:
        return f"{v:.0f} ms"
    if v >= 10:
        return f"{v:.1f} ms"
    if v >= 1:
        return f"{v:.2f} ms"
    return f"{v:.3g} ms"


def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "ms":
        return fmt_ms(v)
    if unit == "ratio":
        return f"{v * 100:.2f}%"
    return f"{v:g}"


def _pct(rel: float) -> str:
    return f"{rel * 100:+.0f}%"


# ---------------------------------------------------------------------------------------------
# The check


class _Check:
    def __init__(self, spec: Spec, spans: pa.Table, baseline: dict | None,
                 run_meta: dict | None, run_id: str | None):
        self.spec = spec
        self.ix = index_for(spans)
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
        r = {"slo": slo.name, "objective": objective, "kind": kind, "status": status,
             "observed": _num(observed), "budget": _num(budget), "baseline": None,
             "unit": unit, "samples": samples, "explanation": explanation,
             "trace_id": None, "baseline_trace_id": None, "p_value": None,
             "significant": None, "contributions": [], "_row": exemplar_row,
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
            text = (f"{label} latency {fmt_ms(observed)} "
                    f"{'within' if ok else 'over'} the {fmt_ms(o.budget)} budget "
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
        msgs = Counter()
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

    def regress_latency(self, ev: SloEval, base: dict, threshold: float, name: str) -> None:
        reg = ev.slo.regression
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
            parts.append(f"{stat} {fmt_ms(b)} -> {fmt_ms(c)} ({_pct(rel) if b > 0 else 'new'})")
            if rel > threshold and (c - b) > reg.latency_min_ms:
                exceeded.append(stat)
                if test.significant and failing is None:
                    failing = (stat, b, c, test)
        stat, b, c, test = failing or ("p50", bl.get("p50"), cand.get("p50"), mwu)
        limit = f"{threshold * 100:g}% and {fmt_ms(reg.latency_min_ms)}"
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
        self.result(ev.slo, name, "regression", "fail" if failing else "pass", c, threshold,
                    "ms", ev.n, text, int(row), baseline=_num(b), baseline_trace_id=btid,
                    p_value=test.p_value, significant=test.significant,
                    _attribute=bool(failing), _base=base)

    def regress_error_rate(self, ev: SloEval, base: dict, threshold: float, name: str) -> None:
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
        self.result(ev.slo, name, "regression", "fail" if failing else "pass", c, threshold,
                    "ratio", n, text, ex, baseline=b, p_value=test.p_value,
                    significant=test.significant)

    def _regress_count(self, ev: SloEval, base: dict, threshold: float, name: str,
                       what: str, values: np.ndarray) -> None:
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
        self.result(ev.slo, name, "regression", "fail" if worse else "pass", cand[stat],
                    threshold, "count", ev.n, text, int(row),
                    baseline=_num(bl.get(stat)),
                    baseline_trace_id=(base.get("trace_ids") or {}).get("p50"))

    def regress_db_queries(self, ev, base, threshold, name) -> None:
        self._regress_count(ev, base, threshold, name, "db_queries", ev.counts.db_queries)

    def regress_repeated_queries(self, ev, base, threshold, name) -> None:
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
            parts.append(f"{label} {fmt_ms(ms)}")
        if not parts:
            return ""
        return (f"Worst trace {trace['trace_id'][:12]}… ({fmt_ms(trace['duration_ms'])}): "
                f"most critical-path time in " + ", then ".join(parts) + ".")

    # -- driver --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        spec, ix = self.spec, self.ix
        # The detectors are DuckDB queries, which run without the GIL: in a second thread
        # they overlap the numpy work below instead of following it.
        pool = ThreadPoolExecutor(1, thread_name_prefix="slo-detectors")
        detecting = pool.submit(run_detectors, ix.table, spec.detectors)
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
              run_meta: dict | None = None, *, run_id: str | None = None) -> dict[str, Any]:
    """Evaluate `spec` over `spans` (one run), against `baseline` if given: the report dict."""
    return _Check(spec, spans, baseline, run_meta, run_id).run()
