"""Why a run got slower, or heavier: latency and counts attributed to span groups.

A failed latency objective says *that* a request got slower. To say *why*, the difference
between baseline and candidate is attributed to span groups (service + span name, or the
normalized statement for DB spans) by their critical-path self time: only time on the
critical path costs the user anything, and critical self times add up to the request's
duration, so a group's share of the added time is well defined. Per group and run we keep
the p50 of its own time, per request and per single span (what the sentence shows: "p50
0.3 ms -> 41 ms"), and the per-request mean of its critical self time (additive across
groups, so it is what the shares are computed from).

`profile()` condenses traces into a small JSON-able dict, so a saved baseline can carry it
instead of raw traces; `attribute_profiles()` compares two profiles.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from statistics import median
from typing import Any

from slo import units
from slo.ingest.spans import statement as db_statement
from slo.judge import sqlnorm
from slo.judge.critical_path import exclusive_segments, self_times, union_ms

Group = tuple[str, str, str | None]

#: Growth below this (ms per request) is float noise, not a contribution.
_NOISE_MS = 1e-6


def _statement(span: Mapping[str, Any]) -> str | None:
    value = db_statement(span.get("attributes") or {})
    return sqlnorm.normalize(value) if value else None


def group_of(span: Mapping[str, Any]) -> Group:
    """(service, span name, normalized statement or None): the unit time is attributed to."""
    return (str(span.get("service") or ""), str(span.get("name") or ""), _statement(span))


def group_label(group: Group) -> str:
    """`inventory-service SELECT ... FROM inventory WHERE ...` or `order-service GET /x`."""
    service, name, statement = group
    return f"{service} {statement if statement else name}".strip()


def _key(group: Group) -> str:
    """The group's id in a profile (saved in baselines): statements by their grouping key,
    so a run that writes `select` and one that writes `SELECT` attribute to one group."""
    return "\x1f".join((group[0], group[1], sqlnorm.key(group[2]) if group[2] else ""))


def profile(traces: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-group time per trace, condensed: {"traces": n, "groups": {key: {...}}}.

    For each group: `p50_ms` is the per-trace p50 of the group's own (exclusive) wall-clock
    time, what the sentence shows; `mean_ms` is the per-trace mean of its critical self time, what the
    shares are computed from (means add up across groups, p50s do not). A trace in which a
    group is absent counts as 0 ms, so all groups are over the same set of requests.
    """
    crit_rows: list[dict[str, float]] = []
    own_rows: list[dict[str, float]] = []
    groups: dict[str, Group] = {}
    durations: list[float] = []
    span_own: dict[str, list[float]] = defaultdict(list)  # own time of each single span
    for trace in traces:
        crit = self_times(trace)
        own = exclusive_segments(trace)
        crit_sums: dict[str, float] = defaultdict(float)
        own_segs: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for s in trace.get("spans") or []:
            sid = str(s.get("span_id"))
            if sid not in own:
                continue
            g = group_of(s)
            k = _key(g)
            groups.setdefault(k, g)
            segs = own.pop(sid)
            own_segs[k] += segs
            span_own[k].append(union_ms(segs))
            crit_sums[k] += crit.get(sid, 0.0)
        crit_rows.append(crit_sums)
        # Wall-clock own time: parallel spans of one group (four calls at once) count once.
        own_rows.append({k: union_ms(v) for k, v in own_segs.items()})
        durations.append(sum(crit_sums.values()))
    n = len(crit_rows)
    out: dict[str, Any] = {}
    for k, g in groups.items():
        own_values = [t.get(k, 0.0) for t in own_rows]
        crit_values = [t.get(k, 0.0) for t in crit_rows]
        out[k] = {
            "service": g[0],
            "span": g[1],
            "statement": g[2],
            "p50_ms": float(median(own_values)),
            "mean_ms": float(sum(crit_values) / n),
            "critical_p50_ms": float(median(crit_values)),
            "span_p50_ms": float(median(span_own[k])),
            "spans_per_trace": len(span_own[k]) / n,
        }
    return {
        "traces": n,
        "p50_ms": float(median(durations)) if durations else 0.0,
        "mean_ms": float(sum(durations) / n) if n else 0.0,
        "groups": out,
    }


def _get(group: Mapping[str, Any] | None, key: str) -> float | None:
    """A profile value, 0 for a group absent from that run, None for older profiles."""
    if group is None:
        return 0.0
    value = group.get(key)
    return None if value is None else round(float(value), 3)


def attribute_profiles(
    baseline: Mapping[str, Any], candidate: Mapping[str, Any], top: int = 5
) -> list[dict[str, Any]]:
    """Groups whose critical self time grew, largest first, with their share of the growth."""
    bg = baseline.get("groups") or {}
    cg = candidate.get("groups") or {}
    rows = []
    for k in set(bg) | set(cg):
        b, c = bg.get(k), cg.get(k)
        meta = c or b or {}  # (k is in one of them)
        b_mean = b["mean_ms"] if b else 0.0
        c_mean = c["mean_ms"] if c else 0.0
        rows.append(
            {
                "group": group_label((meta["service"], meta["span"], meta["statement"])),
                "service": meta["service"],
                "span": meta["span"],
                "statement": meta["statement"],
                "baseline_ms": round(b["p50_ms"] if b else 0.0, 3),
                "candidate_ms": round(c["p50_ms"] if c else 0.0, 3),
                "baseline_critical_ms": round(b_mean, 3),
                "candidate_critical_ms": round(c_mean, 3),
                "baseline_span_ms": _get(b, "span_p50_ms"),
                "candidate_span_ms": _get(c, "span_p50_ms"),
                "baseline_per_trace": _get(b, "spans_per_trace"),
                "candidate_per_trace": _get(c, "spans_per_trace"),
                "_delta": c_mean - b_mean,
            }
        )
    added = sum(r["_delta"] for r in rows if r["_delta"] > _NOISE_MS)
    rows = [r for r in rows if r["_delta"] > _NOISE_MS]
    rows.sort(key=lambda r: (-r["_delta"], r["group"]))
    for r in rows:
        r["share"] = round(r.pop("_delta") / added, 4) if added > 0 else 0.0
    return rows[: max(top, 0)]


def attribute_latency(
    baseline_traces: list[dict[str, Any]], candidate_traces: list[dict[str, Any]], top: int = 5
) -> list[dict[str, Any]]:
    """Where the added latency went: span groups by growth of critical self time, largest first.

    Each item: {"group", "service", "span", "statement", "baseline_ms", "candidate_ms"
    (per-trace p50 of the group's own time), "share" (of the added critical-path time),
    "baseline_critical_ms", "candidate_critical_ms" (per-trace mean critical self time)}.
    """
    return attribute_profiles(profile(baseline_traces), profile(candidate_traces), top)


def _subject(item: Mapping[str, Any]) -> str:
    what = sqlnorm.short(item["statement"]) if item.get("statement") else item.get("span") or ""
    return f"{item.get('service') or ''} `{what}`".strip()


def describe(contributions: list[dict[str, Any]], limit: int = 3) -> str:
    """One clause per leading group, e.g.
    "inventory-service `SELECT ...`: p50 0.3 ms -> 41 ms, about 90% of the added time".

    A statement is described per execution when it ran in both runs ("p50 0.3 ms -> 41 ms
    per run"), with how often it ran per request when that changed too; a group whose
    per-request p50 did not move (absent from most requests) by its mean critical-path time.
    """
    if not contributions:
        return "No span group's critical-path time grew: the added time is spread thinly or not on the critical path."
    parts = []
    for i, item in enumerate(contributions[:limit]):
        if i and float(item.get("share") or 0.0) < 0.05:
            break  # minor contributors after the first only add noise to the sentence
        b, c = float(item.get("baseline_ms") or 0.0), float(item.get("candidate_ms") or 0.0)
        bs, cs = item.get("baseline_span_ms"), item.get("candidate_span_ms")
        bn, cn = item.get("baseline_per_trace"), item.get("candidate_per_trace")
        extra = ""
        if item.get("statement") and bs and cs and bn and cn:
            b, c, stat = float(bs), float(cs), "p50"
            extra = " per run"
            if abs(cn - bn) > 0.1 * max(bn, cn):
                extra += f", {_n(round(bn, 2))} -> {_n(round(cn, 2))} runs per request"
        elif b == c and "candidate_critical_ms" in item:
            # The p50 did not move (the group is absent from most requests): show the mean
            # time it adds to the critical path instead.
            b = float(item.get("baseline_critical_ms") or 0.0)
            c = float(item.get("candidate_critical_ms") or 0.0)
            stat = "mean on the critical path"
        else:
            stat = "p50"
        share = float(item.get("share") or 0.0)
        parts.append(
            f"{_subject(item)}: {stat} {units.duration_ms(b)} -> {units.duration_ms(c)}{extra}, "
            f"about {share * 100:.0f}% of the added time"
        )
    return "; ".join(parts) + "."


def culprit(trace: Mapping[str, Any]) -> str | None:
    """The span with the largest critical self time: where a person should look first.

    A client span's time outside its server child is the wire and the callee's queue (a
    load generator's root span is mostly that); it is only blamed when no span of the
    system itself spent any critical time. Ties: the later span in the list.
    """
    times = self_times(trace)
    if not times:
        return None
    spans = trace.get("spans") or []
    order = {str(s.get("span_id")): i for i, s in enumerate(spans)}
    called = {
        str(s.get("parent_span_id") or "") for s in spans if str(s.get("kind") or "") == "server"
    }
    kinds = {str(s.get("span_id")): str(s.get("kind") or "") for s in spans}
    own = {
        sid: t for sid, t in times.items()
        if t > 0 and not (kinds.get(sid) == "client" and sid in called)
    }
    pool = own or times
    return max(pool, key=lambda sid: (pool[sid], order.get(sid, -1)))


def _statement_counts(trace: Mapping[str, Any], shown: dict[str, str]
                      ) -> Counter[tuple[str, str]]:
    """(service, statement's grouping key) -> times it ran in this trace; `shown` collects
    the text each key is shown as (as written, its first spelling seen)."""
    counts: Counter[tuple[str, str]] = Counter()
    for s in trace.get("spans") or []:
        st = _statement(s)
        if st:
            k = sqlnorm.key(st)
            shown.setdefault(k, st)
            counts[(str(s.get("service") or ""), k)] += 1
    return counts


def explain_counts(
    baseline_traces: list[dict[str, Any]], candidate_traces: list[dict[str, Any]]
) -> str:
    """Which normalized statement now runs more often per request, and how often (p50 and max)."""

    def per_statement(traces: list[dict[str, Any]]) -> tuple[dict[tuple[str, str], list[int]], list[int]]:
        counts = [_statement_counts(t, shown) for t in traces]
        keys = set().union(*counts) if counts else set()
        return {k: [c.get(k, 0) for c in counts] for k in keys}, [sum(c.values()) for c in counts]

    shown: dict[str, str] = {}  # the candidate's spelling first: what the change wrote
    cand, cand_totals = per_statement(candidate_traces)
    base, base_totals = per_statement(baseline_traces)
    rows = []
    for k, values in cand.items():
        before = base.get(k, [0])
        b50, c50 = median(before), median(values)
        bmax, cmax = max(before), max(values)
        if c50 > b50 or cmax > bmax:
            rows.append((c50 - b50, cmax - bmax, k, b50, c50, bmax, cmax))
    if not rows:
        return "No statement runs more often per request than in the baseline."
    rows.sort(key=lambda r: (-r[0], -r[1], r[2]))
    parts = []
    for _, _, (service, statement), b50, c50, bmax, cmax in rows[:3]:
        parts.append(
            f"{service} `{sqlnorm.short(shown[statement])}` now runs {_n(c50)} times per request "
            f"(max {cmax}; baseline {_n(b50)}, max {bmax})"
        )
    total = ""
    if base_totals and cand_totals:
        total = (
            f" DB statements per request: p50 {_n(median(base_totals))} -> {_n(median(cand_totals))}."
        )
    return "; ".join(parts) + "." + total


def _n(value: float) -> str:
    return f"{value:g}"
