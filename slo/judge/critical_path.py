"""The critical path of one trace: the spans that set its duration.

A span's duration alone says little about where a request's time went: a slow child that
runs in parallel with a slower sibling costs nothing. The critical path does: walking back
from the root's end, it repeatedly steps into the child that finished last before the current
point (Jaeger UI's algorithm), and the time a span spends outside the children on that path
is its *critical self time*. These self times add up to the request's duration, which is
what makes them a fair currency for attributing a latency regression to span groups.

Works on the report's trace dict (`spans` with `span_id`, `parent_span_id`, `start_ms`,
`duration_ms`). Broken traces (several roots, orphans whose parent never arrived) are
handled by hanging every root under a virtual root spanning the whole trace; the virtual
root's own gaps are attributed to nobody.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Deeper trees than this are cut off (protects against parent-id cycles in bad data).
MAX_DEPTH = 400

_VIRTUAL = "\0virtual-root"


@dataclass
class _Node:
    span_id: str
    start: float
    end: float
    children: list[_Node] = field(default_factory=list)


def _build(trace: Mapping[str, Any]) -> _Node:
    """Nodes linked by parent id under one virtual root; unknown parents make roots."""
    nodes: dict[str, _Node] = {}
    parents: dict[str, str] = {}
    for s in trace.get("spans") or []:
        sid = str(s.get("span_id") or "")
        if not sid or sid in nodes:
            continue
        start = float(s.get("start_ms") or 0.0)
        dur = max(float(s.get("duration_ms") or 0.0), 0.0)
        nodes[sid] = _Node(sid, start, start + dur)
        parents[sid] = str(s.get("parent_span_id") or "")
    if nodes:
        lo = min(n.start for n in nodes.values())
        hi = max(n.end for n in nodes.values())
    else:
        lo = hi = 0.0
    root = _Node(_VIRTUAL, lo, hi)
    for sid, node in nodes.items():
        parent = nodes.get(parents[sid])
        # A span that names itself as parent, or a cycle, is treated as a root below
        # (cycles are cut by the visited set in the walk).
        (parent if parent is not None and parent is not node else root).children.append(node)
    return root


def _walk(root: _Node) -> tuple[list[str], dict[str, float]]:
    """Critical self time per span (ms) and the spans visited on the path, in walk order."""
    self_ms: dict[str, float] = {}
    order: list[str] = []
    visited: set[str] = set()

    def visit(node: _Node, start: float, end: float, depth: int) -> None:
        # `start`/`end` are the node's interval clipped to its parent's (Jaeger's
        # sanitising of children that overflow their parent, e.g. through clock skew).
        if node.span_id in visited:
            return
        visited.add(node.span_id)
        if node.span_id != _VIRTUAL:
            order.append(node.span_id)
            self_ms.setdefault(node.span_id, 0.0)
        clipped = []
        if depth < MAX_DEPTH:
            for c in node.children:
                cs, ce = max(c.start, start), min(c.end, end)
                if ce < cs or c.end < start or c.start > end:
                    continue  # entirely outside the parent: not on any path
                clipped.append((ce, cs, c))
        # Last-finishing first; ties: the later start first (shorter child), then id.
        clipped.sort(key=lambda t: (-t[0], -t[1], t[2].span_id))
        cur = end
        for ce, cs, c in clipped:
            if ce > cur:
                continue  # overlaps the child already on the path
            if node.span_id != _VIRTUAL:
                self_ms[node.span_id] += cur - ce
            visit(c, cs, ce, depth + 1)
            cur = cs
            if cur <= start:
                break
        if node.span_id != _VIRTUAL:
            self_ms[node.span_id] += max(cur - start, 0.0)

    visit(root, root.start, root.end, 0)
    return order, self_ms


def self_times(trace: Mapping[str, Any]) -> dict[str, float]:
    """Critical self time (ms) of every span on the critical path.

    They add up to the trace's duration (less any gaps between the roots of a broken trace).
    """
    _, times = _walk(_build(trace))
    return times


def critical_path(trace: Mapping[str, Any]) -> list[str]:
    """Span ids on the critical path, ordered by start time (then walk order)."""
    order, _ = _walk(_build(trace))
    starts = {str(s.get("span_id")): float(s.get("start_ms") or 0.0) for s in trace.get("spans") or []}
    rank = {sid: i for i, sid in enumerate(order)}
    return sorted(order, key=lambda sid: (starts.get(sid, 0.0), rank[sid]))


def exclusive_segments(trace: Mapping[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """Each span's own time as intervals (ms): its interval minus its children's.

    Unlike the critical path, this says what the span itself did whether or not anyone
    waited for it: the number a person expects beside a span ("the query took 41 ms").
    """
    spans = trace.get("spans") or []
    iv: dict[str, tuple[float, float]] = {}
    for s in spans:
        sid = str(s.get("span_id") or "")
        if sid and sid not in iv:
            start = float(s.get("start_ms") or 0.0)
            iv[sid] = (start, start + max(float(s.get("duration_ms") or 0.0), 0.0))
    kids: dict[str, list[tuple[float, float]]] = {}
    for s in spans:
        sid, parent = str(s.get("span_id") or ""), str(s.get("parent_span_id") or "")
        if parent in iv and parent != sid and sid in iv:
            kids.setdefault(parent, []).append(iv[sid])
    out: dict[str, list[tuple[float, float]]] = {}
    for sid, (start, end) in iv.items():
        segs, cur = [], start
        for cs, ce in sorted(kids.get(sid, [])):
            if cs > cur:
                segs.append((cur, min(cs, end)))
            cur = max(cur, ce)
            if cur >= end:
                break
        if cur < end:
            segs.append((cur, end))
        out[sid] = [(a, b) for a, b in segs if b > a]
    return out


def union_ms(segments: list[tuple[float, float]]) -> float:
    """Total length of a set of possibly overlapping intervals."""
    total, cur = 0.0, float("-inf")
    for a, b in sorted(segments):
        if b <= cur:
            continue
        total += b - max(a, cur)
        cur = b
    return total


def exclusive_times(trace: Mapping[str, Any]) -> dict[str, float]:
    """Each span's own time (ms): its duration minus the union of its children's intervals."""
    return {sid: union_ms(segs) for sid, segs in exclusive_segments(trace).items()}


def _ms(value: Any) -> float:
    """A span's `start_ms`/`duration_ms` for ordering: anything not a finite number is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) else 0.0


def tree_order(spans: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """(index into `spans`, depth) in tree pre-order: every waterfall draws spans this way.

    A parent comes before its children; siblings by start time, then longest first (a span
    that starts with its sibling and outlasts it reads as the enclosing one), then span id
    and input position, so the order is total and the same in every renderer. Spans whose
    parent is missing (broken propagation, capped traces) or is themselves become roots, so
    nothing is hidden; a span id seen twice keeps its first occurrence as the parent, and
    spans only reachable through a parent-id cycle are appended flat rather than dropped.
    """
    ids: dict[str, int] = {}
    for i, s in enumerate(spans):
        sid = str(s.get("span_id") or "")
        if sid and sid not in ids:
            ids[sid] = i
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for i, s in enumerate(spans):
        parent = str(s.get("parent_span_id") or "")
        pi = ids.get(parent) if parent else None
        if pi is None or pi == i:
            roots.append(i)
        else:
            children.setdefault(pi, []).append(i)

    def key(i: int) -> tuple[float, float, str, int]:
        s = spans[i]
        start, duration = _ms(s.get("start_ms")), _ms(s.get("duration_ms"))
        return (start, -duration, str(s.get("span_id") or ""), i)

    order: list[tuple[int, int]] = []
    seen: set[int] = set()
    stack = [(i, 0) for i in sorted(roots, key=key, reverse=True)]
    while stack:
        i, depth = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        order.append((i, depth))
        stack.extend((c, depth + 1) for c in sorted(children.get(i, ()), key=key, reverse=True))
    order.extend((i, 0) for i in range(len(spans)) if i not in seen)
    return order
