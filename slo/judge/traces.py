"""Span rows of one trace -> the report's trace dict, and choosing which traces to show.

The report carries the traces it talks about (exemplars of objectives, evidence of findings)
so the HTML page, the terminal waterfall and the Locust tab render from the report alone,
without the store. The shape is the `traces` entry of docs/architecture.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from slo.ingest.spans import PROMOTED_ATTRS, STATUS_ERROR, STATUS_OK
from slo.judge.critical_path import critical_path
from slo.judge.explain import culprit

#: Spans kept per trace in a report; the rest are counted in `truncated`.
MAX_SPANS = 300
#: Attributes kept in compact (baseline) traces: what attribution and labels need, i.e. the
#: ones ingest promotes to columns (old and stable names alike).
COMPACT_ATTRS = PROMOTED_ATTRS
_STATUS = {STATUS_OK: "ok", STATUS_ERROR: "error"}


def _attrs(raw: Any, compact: bool) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        attrs = dict(raw)
    else:
        try:
            attrs = json.loads(raw or "{}")
        except ValueError:
            attrs = {}
    if compact:
        attrs = {k: attrs[k] for k in COMPACT_ATTRS if k in attrs}
    return attrs


def subtree(rows: Sequence[Mapping[str, Any]], root_span_id: str) -> list[Mapping[str, Any]]:
    """The rows of the subtree rooted at `root_span_id` (itself included)."""
    children: dict[str, list[Mapping[str, Any]]] = {}
    by_id = {}
    for r in rows:
        children.setdefault(r["parent_span_id"], []).append(r)
        by_id[r["span_id"]] = r
    if root_span_id not in by_id:
        return []
    out, stack, seen = [], [by_id[root_span_id]], set()
    while stack:
        r = stack.pop()
        if r["span_id"] in seen:
            continue
        seen.add(r["span_id"])
        out.append(r)
        stack.extend(children.get(r["span_id"], ()))
    return out


def trace_dict(rows: Iterable[Mapping[str, Any]], role: str = "candidate", *,
               max_spans: int = MAX_SPANS, compact: bool = False,
               with_critical: bool = True) -> dict[str, Any]:
    """A trace dict (docs/architecture.md "traces") from span-table rows of one trace.

    `compact` keeps only the attributes attribution needs (for saved baselines);
    `with_critical` marks the critical path and the culprit span.
    """
    rows = sorted(rows, key=lambda r: (r["start_ns"], r["span_id"]))
    if not rows:
        return {"trace_id": "", "role": role, "start_ns": 0, "duration_ms": 0.0,
                "culprit_span_id": None, "spans": []}
    t0 = rows[0]["start_ns"]
    t1 = max(r["end_ns"] for r in rows)
    total = len(rows)
    spans = []
    for r in rows[:max_spans]:
        spans.append({
            "span_id": r["span_id"], "parent_span_id": r["parent_span_id"],
            "service": r["service"], "name": r["name"], "kind": r["kind"],
            "start_ms": round((r["start_ns"] - t0) / 1e6, 4),
            "duration_ms": round((r["end_ns"] - r["start_ns"]) / 1e6, 4),
            "status": _STATUS.get(r["status_code"], "unset"),
            "status_message": r.get("status_message") or "",
            "critical": False,
            "attributes": _attrs(r.get("attributes"), compact),
        })
    trace = {"trace_id": rows[0]["trace_id"], "role": role, "start_ns": int(t0),
             "duration_ms": round((t1 - t0) / 1e6, 4), "culprit_span_id": None,
             "spans": spans}
    if total > max_spans:
        trace["truncated"] = total - max_spans
    if with_critical:
        on_path = set(critical_path(trace))
        for s in spans:
            s["critical"] = s["span_id"] in on_path
        trace["culprit_span_id"] = culprit(trace)
    return trace


def spread(order: np.ndarray, k: int) -> np.ndarray:
    """k positions spread evenly over `order` (e.g. row numbers sorted by duration)."""
    if len(order) <= k:
        return order
    return order[np.unique(np.linspace(0, len(order) - 1, k).round().astype(np.int64))]


def nearest(values: np.ndarray, target: float) -> int:
    """Index of the value closest to target, preferring the value at or above it."""
    above = np.flatnonzero(values >= target)
    if len(above):
        return int(above[np.argmin(values[above])])
    return int(np.argmax(values))
