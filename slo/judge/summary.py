"""What one run holds per SLO: its selected requests, their distributions and counts.

The check judges these summaries and a saved baseline stores them (`summarize_run`), so the
two sides of a regression are summarised by the same code: a baseline's `latency`,
`db_queries` or `slices` mean exactly what the check computes for the candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from slo.judge import explain
from slo.judge.spec import SLO, Spec
from slo.judge.stats import MAX_SAMPLES, downsample, percentile
from slo.judge.traces import nearest, spread, subtree, trace_dict
from slo.judge.tree import CountStats, RunIndex, index_for

#: Traces per SLO sampled (evenly over the latency ranks) to attribute latency.
ATTRIBUTION_TRACES = 40
#: Values kept per slice and distribution in a baseline (order statistics, see downsample).
SLICE_SAMPLES = 500


@dataclass
class SloEval:
    """One SLO's requests in a run: the selected spans and their per-request values."""

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


def latency_summary(d: np.ndarray) -> dict[str, float]:
    """The latency statistics a baseline keeps and a regression compares (empty: none)."""
    if len(d) == 0:
        return {}
    return {"p50": percentile(d, 50), "p90": percentile(d, 90), "p95": percentile(d, 95),
            "p99": percentile(d, 99), "max": float(d.max()), "mean": float(d.mean()),
            "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0}


def count_summary(c: np.ndarray) -> dict[str, float]:
    """A per-request count's median, maximum and mean (empty: no requests)."""
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


def attribution_picks(ev: SloEval) -> np.ndarray:
    """The requests whose traces attribute an SLO's latency: spread over the latency ranks."""
    return spread(np.argsort(ev.durations, kind="stable"), ATTRIBUTION_TRACES)


def subtree_traces(ix: RunIndex, ev: SloEval, trace_rows: dict[str, list[dict[str, Any]]],
                   picks: np.ndarray, role: str) -> list[dict[str, Any]]:
    """Compact trace dicts of the subtrees under the chosen selected spans."""
    out = []
    ids = ix.rows(ev.rows[picks], ["trace_id", "span_id"])
    for r in ids:
        rows = subtree(trace_rows.get(r["trace_id"], []), r["span_id"])
        if rows:
            out.append(trace_dict(rows, role, compact=True, with_critical=False))
    return out


def summarize_slo(ix: RunIndex, ev: SloEval, trace_rows: dict[str, list[dict[str, Any]]]
                  ) -> dict[str, Any]:
    """What a baseline keeps of one SLO: distributions, counts, statements, a profile."""
    out: dict[str, Any] = {
        "select": ev.slo.select.as_dict(),
        "samples": ev.n,
        "errors": int(ev.errors.sum()),
        "latency": latency_summary(ev.durations),
        "latency_ms": downsample(ev.durations, MAX_SAMPLES),
        "db_queries": count_summary(ev.counts.db_queries),
        "repeated_queries": count_summary(ev.counts.repeated),
        "statements": ev.counts.per_statement,
        "profile": None,
        "trace_ids": {},
    }
    if ev.span_counts is not None:
        out["span_count"] = count_summary(ev.span_counts)
    if ev.n:
        out["profile"] = explain.profile(
            subtree_traces(ix, ev, trace_rows, attribution_picks(ev), "baseline"))
        tids = ix.strings("trace_id", ev.rows).to_numpy(zero_copy_only=False)
        for stat in ("p50", "p90"):
            out["trace_ids"][stat] = str(tids[nearest(ev.durations, out["latency"][stat])])
    return out


def _needed_for_summary(ix: RunIndex, ev: SloEval) -> tuple[set[str], set[str]]:
    """The trace ids of the SLO's profile (attribution's picks) and those the baseline keeps
    whole (its p50 and p90 requests)."""
    if not ev.n:
        return set(), set()
    picks = ix.rows(ev.rows[attribution_picks(ev)], ["trace_id"])
    lat = latency_summary(ev.durations)
    kept = ix.rows(np.array([ev.rows[nearest(ev.durations, lat["p50"])],
                             ev.rows[nearest(ev.durations, lat["p90"])]]), ["trace_id"])
    return {r["trace_id"] for r in picks}, {r["trace_id"] for r in kept}


def run_info(ix: RunIndex, run_id: str | None, run_meta: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """The report's `run` block: id, time span, sizes, services, load figures if known."""
    t = ix.table
    info: dict[str, Any] = {"run_id": run_id, "start_ns": None, "end_ns": None,
                            "spans": t.num_rows, "traces": 0, "services": [], "load": None}
    if t.num_rows:
        info["start_ns"] = int(pc.min(t.column("start_ns")).as_py())
        info["end_ns"] = int(pc.max(t.column("end_ns")).as_py())
        info["traces"] = ix.n_traces
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
                  run_meta: dict[str, Any] | None = None, *, ix: RunIndex | None = None,
                  slices: Any = None, source: Any = None) -> dict[str, Any]:
    """Everything a later comparison needs of a run, as JSON-able data (a baseline's body).

    With `slices` (one label per span: the gate's slice run ids) each SLO also keeps its
    values per slice, so a candidate interleaved with these slices is judged pair by pair.
    """
    ix = ix or index_for(spans, source)
    codes, labels, starts = slice_labels(ix, slices) if slices is not None else (None, [], [])
    run_id = run_id or detect_run_id(spans)
    evals = [evaluate(ix, s) for s in spec.slos]
    profiled: set[str] = set()
    kept: set[str] = set()
    for ev in evals:
        p, k = _needed_for_summary(ix, ev)
        profiled |= p
        kept |= k
    # the traces a baseline keeps whole; the profiled ones only as attribution reads them
    trace_rows = {**ix.trace_rows(profiled - kept, whole=False), **ix.trace_rows(kept)}
    slos: dict[str, dict[str, Any]] = {}
    traces: dict[str, dict[str, Any]] = {}
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
