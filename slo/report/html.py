"""slo-report.html and the shared trace waterfall page.

The report must let a person do the whole investigation from the CI artifact alone: the
verdict, which objective failed, the exemplar trace drawn to scale with its culprit span, the
same request in the baseline beside it, and the latency distributions. So the page is one
self-contained file (inline CSS, SVG and a little JavaScript, no network fetches) rendered by
Jinja2 with autoescaping on: span names and attributes are untrusted input.

All geometry (bar positions, axis ticks, CDF polylines) is computed here, in plain Python,
so the templates stay declarative and a report with thousands of spans renders quickly. The
same `waterfall` macro serves `render_html` and `render_trace_html` (the Locust SLO tab's
trace view), so both pages always draw a trace the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from numbers import Real
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from slo import units
from slo.judge.critical_path import tree_order

__all__ = ["render_html", "render_trace_html", "service_colors"]

_TEMPLATES = Path(__file__).with_name("templates")

#: Colour-blind-friendly categorical palette (Okabe-Ito and Tableau 10, darkened for text).
_PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#ff9da7",
    "#9c755f",
    "#e15759",
    "#bab0ac",
]

#: Waterfall geometry in SVG user units; the SVG scales to its container width.
_ROW_H = 20
_AXIS_H = 24
_SOLO = {"width": 1200, "label_w": 360}
_PAIR = {"width": 720, "label_w": 250}
_DUR_W = 64  # room right of the bars for a duration label
_CHAR_W = 6.4  # average glyph width of the 11px label font, for truncation

_STATUS_ORDER = {"fail": 0, "no_data": 1, "pass": 2}


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,
    )
    env.filters["fmt"] = units.value
    env.filters["ms"] = units.duration_ms
    env.filters["anchor"] = _anchor
    env.filters["codeticks"] = _codeticks
    return env


_ENV: jinja2.Environment | None = None


def _get_env() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = _env()
    return _ENV


# --------------------------------------------------------------------------- formatting


def _codeticks(text: Any) -> markupsafe.Markup:
    """Explanations quote statements and span names in `backticks`: show those as code.

    Every piece is escaped before it is wrapped, so untrusted text stays text.
    """
    parts = str(text).split("`")
    if len(parts) % 2 == 0:  # unbalanced: leave the text as it is
        return markupsafe.escape(str(text))
    out = []
    for i, part in enumerate(parts):
        esc = markupsafe.escape(part)
        out.append(markupsafe.Markup("<code>%s</code>") % esc if i % 2 else esc)
    return markupsafe.Markup("").join(out)


def _anchor(value: Any) -> str:
    """A safe, stable HTML id fragment for an untrusted trace id."""
    return re.sub(r"[^0-9A-Za-z_-]", "_", str(value))[:80] or "_"


def _iso_ns(ns: Any) -> str:
    if not isinstance(ns, Real) or isinstance(ns, bool) or ns <= 0:
        return "–"
    try:
        return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "–"


def _num(value: Any, default: float = 0.0) -> float:
    if isinstance(value, Real) and not isinstance(value, bool):
        v = float(value)
        if math.isfinite(v):
            return v
    return default


def _json_safe(value: Any, depth: int = 0) -> Any:
    """Span attributes as strict JSON: JSON.parse rejects NaN, and bytes or objects do not dump."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth < 4 and isinstance(value, Mapping):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if depth < 4 and isinstance(value, list | tuple):
        return [_json_safe(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# --------------------------------------------------------------------------- colours


def service_colors(services: Iterable[str]) -> dict[str, str]:
    """A distinct colour per service, stable for a given set (sorted, then palette order)."""
    out: dict[str, str] = {}
    for i, svc in enumerate(sorted({str(s) for s in services})):
        if i < len(_PALETTE):
            out[svc] = _PALETTE[i]
        else:  # golden-angle hues beyond the palette
            out[svc] = f"hsl({(i * 137.508) % 360:.0f} 55% 48%)"
    return out


def _trace_services(trace: Mapping[str, Any] | None) -> set[str]:
    if not trace:
        return set()
    return {
        str(s.get("service") or "?") for s in trace.get("spans") or [] if isinstance(s, Mapping)
    }


# --------------------------------------------------------------------------- waterfall


def _nice_step(span: float, target: int = 6) -> float:
    """A 1-2-5 step giving about `target` ticks over `span`."""
    if span <= 0:
        return 1.0
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _signature(spans: list[Mapping[str, Any]], i: int) -> tuple:
    """What identifies "the same span" in another trace of the same request.

    Span names are often generic (every outbound call is `GET`), so a span is known by its
    path from the root and by its children: `order-service GET` whose child is
    `inventory-service GET /stock`.
    """
    by_id = {sp.get("span_id"): j for j, sp in enumerate(spans) if sp.get("span_id")}

    def key(j: int) -> tuple[str, str]:
        return (str(spans[j].get("service") or "?"), str(spans[j].get("name") or ""))

    path, seen, j = [], set(), i
    while j is not None and j not in seen and len(path) < 64:
        seen.add(j)
        path.append(key(j))
        parent = spans[j].get("parent_span_id")
        j = by_id.get(parent) if parent else None
    children = sorted(
        key(c) for c, sp in enumerate(spans) if sp.get("parent_span_id") == spans[i].get("span_id")
    )
    return (tuple(path), tuple(children))


def _find_signature(spans: list[Mapping[str, Any]], sig: tuple) -> set[int]:
    """The one span with this signature (by path and children, else by path), or none.

    An ambiguous match marks nothing: a wrong "same span" is worse than none.
    """
    path = sig[0]
    candidates = [
        i
        for i, sp in enumerate(spans)
        if (str(sp.get("service") or "?"), str(sp.get("name") or "")) == path[0]
    ]
    sigs = {i: _signature(spans, i) for i in candidates}

    def same_path(other: tuple) -> bool:
        # One trace may hold only part of the request (lost context): compare the common
        # part of the two paths, counted upwards from the span itself.
        n = min(len(other), len(path))
        return other[:n] == path[:n]

    exact = {i for i, s in sigs.items() if same_path(s[0]) and s[1] == sig[1]}
    if len(exact) == 1:
        return exact
    by_path = exact or {i for i, s in sigs.items() if same_path(s[0])}
    return by_path if len(by_path) == 1 else set()


class _Row:
    """One drawn span; a slotted object because the template reads it thousands of times."""

    __slots__ = (
        "i",
        "y",
        "lx",
        "label",
        "service",
        "color",
        "x",
        "w",
        "cls",
        "critical",
        "culprit",
        "error",
        "dur",
        "tx",
        "anchor",
        "inside",
        "match",
    )

    def __init__(self, **kw: Any):
        for k, val in kw.items():
            setattr(self, k, val)


def _truncate(text: str, chars: int) -> str:
    if chars < 4:
        chars = 4
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _waterfall(
    trace: Mapping[str, Any],
    *,
    wid: str,
    scale_ms: float,
    colors: Mapping[str, str],
    layout: Mapping[str, int],
    match: tuple | None = None,
    as_baseline: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The drawable view of one trace, plus the per-span details the page's script shows."""
    spans = [s for s in trace.get("spans") or [] if isinstance(s, Mapping)]
    width, label_w = layout["width"], layout["label_w"]
    bar_x0 = label_w + 8
    bar_w = width - bar_x0 - _DUR_W
    scale = max(scale_ms, 1e-9)
    # Drawn as the baseline beside a candidate, a trace's own culprit would mislead: what
    # matters there is the span that plays the candidate culprit's part (`match`).
    culprit = None if as_baseline else trace.get("culprit_span_id")
    rows: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    culprit_name = None
    matched = None
    match_idx = _find_signature(spans, match) if match is not None and not culprit else set()
    for n, (i, depth) in enumerate(tree_order(spans)):
        s = spans[i]
        start = max(_num(s.get("start_ms")), 0.0)
        dur = max(_num(s.get("duration_ms")), 0.0)
        service = str(s.get("service") or "?")
        name = str(s.get("name") or "")
        x = bar_x0 + bar_w * min(start / scale, 1.0)
        w = max(bar_w * min(dur / scale, 1.0), 1.0)
        w = min(w, bar_x0 + bar_w - x) if x < bar_x0 + bar_w else 1.0
        end_x = x + w
        is_culprit = bool(culprit) and s.get("span_id") == culprit
        status = str(s.get("status") or "unset")
        indent = min(depth, 12) * 10
        if is_culprit:
            culprit_name = f"{service}: {name}"
        # In a baseline trace, the span that plays the candidate culprit's part.
        is_match = i in match_idx
        if is_match:
            matched = f"{service}: {name}"
        # Duration label right of the bar, or inside its end when the bar reaches the edge.
        if end_x + 4 + 56 <= width:
            tx, anchor, inside = end_x + 4, "start", False
        else:
            tx, anchor, inside = end_x - 4, "end", True
        rows.append(
            _Row(
                i=n,
                y=_AXIS_H + n * _ROW_H,
                lx=6 + indent,
                label=_truncate(name, int((label_w - 24 - indent) / _CHAR_W)),
                service=service,
                color=colors.get(service, "#888"),
                x=round(x, 1),
                w=round(w, 1),
                cls=" ".join(
                    c
                    for c, on in (
                        ("culprit", is_culprit),
                        ("crit", bool(s.get("critical"))),
                        ("err", status == "error"),
                    )
                    if on
                ),
                critical=bool(s.get("critical")),
                culprit=is_culprit,
                error=status == "error",
                dur=units.duration_ms(dur),
                tx=round(tx, 1),
                anchor=anchor,
                inside=inside,
                match=is_match,
            )
        )
        attrs = s.get("attributes")
        details.append(
            {
                "name": name,
                "service": service,
                "kind": str(s.get("kind") or ""),
                "start": units.duration_ms(start),
                "duration": units.duration_ms(dur),
                "status": status,
                "status_message": str(s.get("status_message") or ""),
                "critical": bool(s.get("critical")),
                "culprit": is_culprit,
                "span_id": str(s.get("span_id") or ""),
                "attributes": _json_safe(attrs) if isinstance(attrs, Mapping) else {},
            }
        )
    culprit_key = None
    if culprit_name:
        ci = next(i for i, sp in enumerate(spans) if sp.get("span_id") == culprit)
        culprit_key = _signature(spans, ci)
    step = _nice_step(scale)
    ticks = []
    t = 0.0
    while t <= scale * 1.0001 and len(ticks) < 40:
        ticks.append({"x": round(bar_x0 + bar_w * t / scale, 1), "label": units.duration_ms(t) if t else "0"})
        t += step
    view = {
        "id": wid,
        "trace_id": str(trace.get("trace_id") or ""),
        "role": str(trace.get("role") or ""),
        "duration": units.duration_ms(_num(trace.get("duration_ms"))),
        "n_spans": len(spans),
        "culprit": culprit_name,
        "culprit_key": culprit_key,
        "matched": matched,
        "width": width,
        "axis_h": _AXIS_H,
        "height": _AXIS_H + max(len(rows), 1) * _ROW_H + 4,
        "bar_x0": bar_x0,
        "bar_end": bar_x0 + bar_w,
        "label_w": label_w,
        "ticks": ticks,
        "rows": rows,
        "services": sorted({r.service for r in rows}),
    }
    return view, details


def _trace_duration(trace: Mapping[str, Any] | None) -> float:
    if not trace:
        return 0.0
    d = _num(trace.get("duration_ms"))
    for s in trace.get("spans") or []:
        if isinstance(s, Mapping):
            d = max(d, _num(s.get("start_ms")) + _num(s.get("duration_ms")))
    return d


class _Waterfalls:
    """Builds waterfall views with unique ids and collects their span details for the page."""

    def __init__(self, colors: Mapping[str, str]):
        self.colors = colors
        self.data: dict[str, list[dict[str, Any]]] = {}
        self._n = 0

    def pair(
        self, candidate: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """Candidate and (optional) baseline trace on one time scale."""
        scale = max(_trace_duration(candidate), _trace_duration(baseline), 1e-3)
        layout = _PAIR if candidate and baseline else _SOLO
        out: dict[str, Any] = {"candidate": None, "baseline": None, "scale": units.duration_ms(scale)}
        match = None
        for key, trace in (("candidate", candidate), ("baseline", baseline)):
            if trace:
                self._n += 1
                wid = f"wf-{self._n}"
                view, details = _waterfall(
                    trace,
                    wid=wid,
                    scale_ms=scale,
                    colors=self.colors,
                    layout=layout,
                    match=match,
                    as_baseline=key == "baseline" and candidate is not None,
                )
                match = view["culprit_key"]
                if not view["role"]:
                    view["role"] = key
                out[key] = view
                self.data[wid] = details
        names = set((out["candidate"] or {}).get("services", [])) | set(
            (out["baseline"] or {}).get("services", [])
        )
        out["services"] = [{"name": s, "color": self.colors.get(s, "#888")} for s in sorted(names)]
        return out


# --------------------------------------------------------------------------- distributions

_CDF_W, _CDF_H = 600, 280
_CDF_PAD = {"l": 44, "r": 28, "t": 14, "b": 40}


def _nice_bound(v: float, *, up: bool) -> float:
    """The nearest 1-2-5 value at or beyond `v` (upwards or downwards)."""
    mag = 10 ** math.floor(math.log10(v))
    steps = (1, 2, 5, 10)
    if up:
        return next(m * mag for m in steps if m * mag >= v * (1 - 1e-9))
    return next(m * mag for m in reversed(steps) if m * mag <= v * (1 + 1e-9))


def _quantile(sorted_vals: Sequence[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    pos = q * (len(sorted_vals) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def _clean(values: Any) -> list[float]:
    if not isinstance(values, list | tuple):
        return []
    return sorted(v for v in (_num(x, float("nan")) for x in values) if math.isfinite(v) and v >= 0)


def _distribution(slo: Mapping[str, Any]) -> dict[str, Any] | None:
    """Empirical CDFs of candidate and baseline latency on a log-x axis, with budget lines."""
    lat = slo.get("latency_ms") if isinstance(slo.get("latency_ms"), Mapping) else {}
    cand, base = _clean(lat.get("candidate")), _clean(lat.get("baseline"))
    budgets_raw = slo.get("budgets_ms") if isinstance(slo.get("budgets_ms"), Mapping) else {}
    budgets = {str(k): _num(v) for k, v in budgets_raw.items() if _num(v) > 0}
    if not cand and not base:
        return None
    positives = [v for v in cand + base + list(budgets.values()) if v > 0]
    if not positives:
        return None
    lo = _nice_bound(min(positives), up=False)
    hi = _nice_bound(max(positives) * 1.02, up=True)
    if hi <= lo:
        hi = lo * 10
    llo, lhi = math.log10(lo), math.log10(hi)
    pl, pr, pt, pb = _CDF_PAD["l"], _CDF_PAD["r"], _CDF_PAD["t"], _CDF_PAD["b"]
    pw, ph = _CDF_W - pl - pr, _CDF_H - pt - pb

    def px(v: float) -> float:
        v = max(v, lo)
        return pl + pw * (math.log10(v) - llo) / (lhi - llo)

    def py(q: float) -> float:
        return pt + ph * (1 - q)

    def polyline(vals: list[float]) -> str:
        n = len(vals)
        stride = max(1, n // 400)  # at most ~400 steps: the shape, not every sample
        pts = [f"{px(vals[0]):.1f},{py(0):.1f}"]
        idx = list(range(0, n, stride))
        if idx[-1] != n - 1:
            idx.append(n - 1)
        prev_q = 0.0
        for i in idx:
            x = px(vals[i])
            q = (i + 1) / n
            pts.append(f"{x:.1f},{py(prev_q):.1f}")
            pts.append(f"{x:.1f},{py(q):.1f}")
            prev_q = q
        return " ".join(pts)

    series = []
    for label, vals, cls in (("baseline", base, "base"), ("candidate", cand, "cand")):
        if vals:
            series.append(
                {
                    "label": label,
                    "cls": cls,
                    "points": polyline(vals),
                    "n": len(vals),
                    "p50": units.duration_ms(_quantile(vals, 0.5)),
                    "p95": units.duration_ms(_quantile(vals, 0.95)),
                    "p99": units.duration_ms(_quantile(vals, 0.99)),
                    "max": units.duration_ms(vals[-1]),
                }
            )
    xticks = []
    decade = 10 ** math.floor(math.log10(lo))
    while decade <= hi * 1.0001:
        for m in (1, 2, 5):
            v = decade * m
            if lo <= v <= hi * 1.0001:
                xticks.append({"x": round(px(v), 1), "label": units.tick_ms(v), "major": m == 1})
        decade *= 10
    yticks = [
        {"y": round(py(q), 1), "label": f"{q * 100:.0f}%" if q != 0.95 else "", "q": q}
        for q in (0, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0)
    ]
    budget_lines = []
    for i, (name, v) in enumerate(sorted(budgets.items(), key=lambda kv: kv[1])):
        budget_lines.append(
            {"x": round(px(v), 1), "label": f"{name} {units.duration_ms(v)}", "ly": pt + 14 + 14 * (i % 3)}
        )
    return {
        "width": _CDF_W,
        "height": _CDF_H,
        "x0": pl,
        "x1": _CDF_W - pr,
        "y0": pt,
        "y1": pt + ph,
        "series": series,
        "xticks": xticks,
        "yticks": yticks,
        "budgets": budget_lines,
    }


_IV_W, _IV_ROW, _IV_PAD = 600, 26, {"l": 56, "r": 20, "t": 22, "b": 30}


def _intervals(results: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """A forest plot of one SLO's latency changes: each statistic's estimate and interval on a
    log axis of candidate/baseline, with "no change" and the fail threshold drawn, so a reader
    sees at once whether an interval clears the threshold (fails) or reaches below it."""
    reg = next((r for r in results if r.get("kind") == "regression" and r.get("unit") == "ms"
                and isinstance(r.get("comparisons"), list) and r.get("comparisons")), None)
    if reg is None:
        return None
    rows = [c for c in reg["comparisons"] if isinstance(c, Mapping)
            and all(isinstance(c.get(k), Real) for k in ("change", "ci_low", "ci_high"))]
    if not rows:
        return None

    def lg(rel: float) -> float:
        return math.log(max(1.0 + float(rel), 1e-3))

    thr = [_num(c.get("threshold")) for c in rows]
    pts = [lg(v) for c in rows for v in (c["ci_low"], c["ci_high"])] + [lg(t) for t in thr]
    lo, hi = min(pts + [0.0]), max(pts + [0.0])
    pad = (hi - lo) * 0.08 or 0.1
    lo, hi = lo - pad, hi + pad
    pl, pr, pt, pb = _IV_PAD["l"], _IV_PAD["r"], _IV_PAD["t"], _IV_PAD["b"]
    height = pt + pb + _IV_ROW * len(rows)

    def px(rel: float) -> float:
        return round(pl + (_IV_W - pl - pr) * (lg(rel) - lo) / (hi - lo), 1)

    items = []
    for i, c in enumerate(rows):
        y = pt + _IV_ROW * i + _IV_ROW / 2
        items.append({"stat": str(c.get("stat") or ""), "y": y, "x": px(c["change"]),
                      "x0": px(c["ci_low"]), "x1": px(c["ci_high"]),
                      "tx": px(_num(c.get("threshold"))),
                      "fails": bool(c.get("significant")),
                      "label": units.result_change(c, "ms")})
    ticks = []
    for rel in (-0.9, -0.5, -0.2, 0.0, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0):
        if lo <= lg(rel) <= hi:
            ticks.append({"x": px(rel), "label": f"{rel * 100:+.0f}%" if rel else "0"})
    return {"width": _IV_W, "height": height, "x0": pl, "x1": _IV_W - pr, "y0": pt - 8,
            "y1": height - pb + 4, "rows": items, "ticks": ticks, "zero": px(0.0),
            "method": str(reg.get("method") or "")}


# --------------------------------------------------------------------------- report view


def _run_facts(run: Any) -> dict[str, Any] | None:
    if not isinstance(run, Mapping):
        return None
    load = run.get("load") if isinstance(run.get("load"), Mapping) else {}
    start, end = _num(run.get("start_ns")), _num(run.get("end_ns"))
    services = run.get("services")
    return {
        "run_id": run.get("run_id"),
        "start": _iso_ns(start),
        "end": _iso_ns(end),
        "duration": f"{(end - start) / 1e9:.1f} s" if end > start > 0 else "–",
        "spans": run.get("spans"),
        "traces": run.get("traces"),
        "services": ", ".join(str(s) for s in services) if isinstance(services, list) else "–",
        "users": load.get("users"),
        "requests": load.get("requests"),
        "failures": load.get("failures"),
        "rps": f"{_num(load.get('rps')):.1f}" if load.get("rps") is not None else None,
    }


def _completeness(c: Any) -> str:
    from slo.judge.completeness import sentence

    return sentence(c) if isinstance(c, Mapping) else ""


def _result_sort_key(r: Mapping[str, Any]) -> tuple[int, int]:
    return (_STATUS_ORDER.get(str(r.get("status")), 3), 0 if r.get("kind") != "regression" else 1)


def _report_view(report: Mapping[str, Any]) -> dict[str, Any]:
    traces_raw = report.get("traces") if isinstance(report.get("traces"), Mapping) else {}
    traces = {str(k): v for k, v in traces_raw.items() if isinstance(v, Mapping)}
    results = [r for r in report.get("results") or [] if isinstance(r, Mapping)]
    findings = [f for f in report.get("findings") or [] if isinstance(f, Mapping)]
    slos = [s for s in report.get("slos") or [] if isinstance(s, Mapping)]

    services: set[str] = set()
    run = report.get("run") if isinstance(report.get("run"), Mapping) else {}
    services.update(str(s) for s in run.get("services") or [])
    for t in traces.values():
        services |= _trace_services(t)
    colors = service_colors(services)
    wfs = _Waterfalls(colors)

    # Group results by SLO, SLO order by worst status, objectives failures first.
    order: list[str] = [str(s.get("name")) for s in slos]
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        name = str(r.get("slo") or "?")
        groups.setdefault(name, []).append(r)
        if name not in order:
            order.append(name)
    slo_by_name = {str(s.get("name")): s for s in slos}
    shown_traces: dict[str, str] = {}  # trace id -> anchor of its first waterfall
    slo_views = []
    failures = []
    for name in order:
        rs = sorted(groups.get(name, []), key=_result_sort_key)
        objectives = []
        for r in rs:
            status = str(r.get("status") or "unknown")
            obj = {
                "slo": name,
                "objective": str(r.get("objective") or "?"),
                "kind": str(r.get("kind") or "objective"),
                "status": status,
                "observed": units.value(r.get("observed"), r.get("unit")),
                "budget": units.budget(r),
                "baseline": units.value(r.get("baseline"), r.get("unit")),
                "samples": r.get("samples"),
                "explanation": str(r.get("explanation") or ""),
                "change": units.result_change(r, str(r.get("unit") or "")) if r.get("kind") ==
                "regression" else "",
                "pattern": (f"{r['pattern']}: {_num(r.get('affected_share')) * 100:.0f}% of "
                            "requests" if r.get("pattern") and r.get("kind") == "regression"
                            and r.get("unit") == "ms" and status == "fail" else ""),
                "p_value": (
                    f"{_num(r.get('p_value')):.3g}"
                    if isinstance(r.get("p_value"), Real) and not isinstance(r.get("p_value"), bool)
                    else None
                ),
                "trace_id": r.get("trace_id"),
                "baseline_trace_id": r.get("baseline_trace_id"),
                "anchor": None,
                "contributions": [],
                "pair": None,
            }
            if status == "fail":
                obj["anchor"] = f"fail-{len(failures) + 1}"
                cand = traces.get(str(r.get("trace_id"))) if r.get("trace_id") else None
                base = (
                    traces.get(str(r.get("baseline_trace_id")))
                    if r.get("baseline_trace_id")
                    else None
                )
                if cand or base:
                    obj["pair"] = wfs.pair(cand, base)
                    for key, tid in (
                        ("candidate", r.get("trace_id")),
                        ("baseline", r.get("baseline_trace_id")),
                    ):
                        view = obj["pair"][key]
                        if view and str(tid) not in shown_traces:
                            shown_traces[str(tid)] = view["id"]
                obj["missing_trace"] = bool(r.get("trace_id")) and cand is None
                for c in r.get("contributions") or []:
                    if isinstance(c, Mapping):
                        obj["contributions"].append(
                            {
                                "group": str(c.get("group") or ""),
                                "service": str(c.get("service") or ""),
                                "span": str(c.get("span") or ""),
                                "statement": c.get("statement"),
                                "baseline": units.duration_ms(c.get("baseline_ms")),
                                "candidate": units.duration_ms(c.get("candidate_ms")),
                                "share": max(0.0, min(1.0, _num(c.get("share")))),
                            }
                        )
                failures.append(obj)
            objectives.append(obj)
        worst = objectives[0]["status"] if objectives else "no_data"
        slo_raw = slo_by_name.get(name, {})
        slo_views.append(
            {
                "name": name,
                "anchor": f"slo-{_anchor(name)}",
                "status": worst,
                "objectives": objectives,
                "samples": slo_raw.get("samples"),
                "select": slo_raw.get("select")
                if isinstance(slo_raw.get("select"), Mapping)
                else None,
                "dist": _distribution(slo_raw) if slo_raw else None,
                "intervals": _intervals(rs),
            }
        )
    slo_views.sort(key=lambda s: _STATUS_ORDER.get(s["status"], 3))

    # Findings link to their trace's waterfall; traces not drawn above get their own.
    finding_views = []
    extra_traces = []
    for f in findings:
        tid = f.get("trace_id")
        target = None
        if tid and str(tid) in shown_traces:
            target = shown_traces[str(tid)]
        elif tid and str(tid) in traces:
            pair = wfs.pair(traces[str(tid)], None)
            target = pair["candidate"]["id"]
            shown_traces[str(tid)] = target
            extra_traces.append({"trace_id": str(tid), "pair": pair, "detectors": []})
        for t in extra_traces:
            if t["trace_id"] == str(tid) and str(f.get("detector")) not in t["detectors"]:
                t["detectors"].append(str(f.get("detector") or "?"))
        finding_views.append(
            {
                "detector": str(f.get("detector") or "?"),
                "service": str(f.get("service") or ""),
                "span": str(f.get("span") or ""),
                "statement": f.get("statement"),
                "count": f.get("count"),
                "message": str(f.get("message") or ""),
                "fails": bool(f.get("fails")),
                "saved": units.duration_ms(f.get("saved_ms")) if f.get("saved_ms") is not None else None,
                "trace_id": tid,
                "target": target,
            }
        )
    finding_views.sort(key=lambda f: not f["fails"])

    n_fail = sum(1 for r in results if r.get("status") == "fail")
    n_nodata = sum(1 for r in results if r.get("status") == "no_data")
    verdict = str(report.get("verdict") or ("fail" if n_fail or n_nodata else "pass"))
    return {
        "verdict": verdict,
        "run_id": report.get("run_id"),
        "baseline_run_id": report.get("baseline_run_id"),
        "generated_at": report.get("generated_at"),
        "n_results": len(results),
        "n_fail": n_fail,
        "n_nodata": n_nodata,
        "n_pass": sum(1 for r in results if r.get("status") == "pass"),
        "failures": failures,
        "slos": slo_views,
        "findings": finding_views,
        "extra_traces": extra_traces,
        "run": _run_facts(report.get("run")),
        "completeness": _completeness(report.get("completeness")),
        "baseline_run": _run_facts(report.get("baseline_run")),
        "colors": sorted(colors.items()),
        "data": wfs.data,
    }


# --------------------------------------------------------------------------- public API


def render_html(report: dict) -> str:
    """slo-report.html from the report dict (docs/architecture.md, "Report dict").

    Tolerates missing optional keys: no baseline, no traces, no slos, no findings.
    """
    if not isinstance(report, Mapping):
        report = {}
    view = _report_view(report)
    return _get_env().get_template("report.html").render(v=view)


def render_trace_html(trace: dict, baseline: dict | None = None, title: str = "") -> str:
    """A standalone page with one trace's waterfall, and the baseline trace beside it.

    Both traces share one time scale, so the longer bar is visibly longer. Used by the
    Locust SLO tab for each failing objective's worst trace.
    """
    trace = trace if isinstance(trace, Mapping) else {}
    baseline = baseline if isinstance(baseline, Mapping) else None
    colors = service_colors(_trace_services(trace) | _trace_services(baseline))
    wfs = _Waterfalls(colors)
    pair = wfs.pair(trace, baseline)
    view = {
        "title": title or f"Trace {trace.get('trace_id') or ''}".strip(),
        "pair": pair,
        "colors": sorted(colors.items()),
        "data": wfs.data,
    }
    return _get_env().get_template("trace.html").render(v=view)
