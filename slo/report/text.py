"""A trace as a plain-text waterfall, for terminals, CI logs and Markdown code blocks.

One line per span, indented by depth, with a bar drawn to scale: the picture a person
needs to see *where* a slow request spent its time without opening a trace viewer.
Critical-path spans are drawn solid (`█`), the rest light (`░`), and the culprit span is
marked `◀ culprit`. No ANSI colour, so the text survives logs and pull-request comments.

    order-service GET /orders/<int:order_id>   |████████████████████████████|  52.1 ms
      order-service GET                         |░░░                         |   3.0 ms
      inventory-service SELECT ... FROM inv...  |   ███████████████████████  |  41.0 ms ◀ culprit
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slo import units
from slo.ingest.spans import statement as db_statement
from slo.judge import sqlnorm
from slo.judge.critical_path import critical_path, tree_order
from slo.judge.explain import culprit as find_culprit

SOLID, LIGHT = "█", "░"
MARK = "◀ culprit"


def _label(span: Mapping[str, Any], parent_service: str | None) -> str:
    """Service and name; a DB span shows its statement, without the service when it is
    the parent's (the indentation already says whose query it is)."""
    attrs = span.get("attributes") or {}
    statement = db_statement(attrs)
    service = str(span.get("service") or "")
    if statement:
        what = sqlnorm.short(str(statement), 70)
        text = what if service == parent_service else f"{service} {what}"
    else:
        text = f"{service} {span.get('name') or ''}".strip()
    if str(span.get("status") or "") == "error":
        text += " !"
    return text




def _rows(
    ordered: list[tuple[int, Mapping[str, Any]]], labels: list[str], parents_with_children: set[str],
    collapse: int,
) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """Lines to draw: consecutive leaf siblings with the same label (an N+1 loop's queries)
    become one line when there are at least `collapse` of them."""
    out: list[tuple[str, list[Mapping[str, Any]]]] = []
    key_prev = None
    for (depth, s), label in zip(ordered, labels, strict=True):
        sid = str(s.get("span_id"))
        leaf = sid not in parents_with_children
        key = (depth, str(s.get("parent_span_id") or ""), label) if leaf else None
        if key is not None and key == key_prev:
            out[-1][1].append(s)
        else:
            out.append((label, [s]))
        key_prev = key
    rows: list[tuple[str, list[Mapping[str, Any]]]] = []
    for label, group in out:
        if 1 < len(group) < max(collapse, 2):
            rows.extend((label, [g]) for g in group)
        else:
            rows.append((label, group))
    return rows


def render(
    trace: Mapping[str, Any],
    culprit_span_id: str | None = None,
    width: int = 100,
    max_spans: int = 150,
    collapse: int = 4,
) -> str:
    """The trace as text lines of at most about `width` characters.

    `culprit_span_id` defaults to the span with the largest critical self time. Runs of at
    least `collapse` sibling leaf spans with the same label (an N+1 loop) are drawn as one
    line "× N" with their summed duration (0: never collapse). More than `max_spans` lines
    are cut, with a line saying how many spans were left out.
    """
    spans = list(trace.get("spans") or [])
    tid = str(trace.get("trace_id") or "")
    if not spans:
        return f"trace {tid}: no spans"
    if culprit_span_id is None:
        culprit_span_id = find_culprit(trace)
    critical = set(critical_path(trace))
    t0 = min(float(s.get("start_ms") or 0.0) for s in spans)
    t1 = max(float(s.get("start_ms") or 0.0) + float(s.get("duration_ms") or 0.0) for s in spans)
    total = max(t1 - t0, 1e-9)

    services = {str(s.get("span_id")): str(s.get("service") or "") for s in spans}
    callee: dict[str, str] = {}
    for s in spans:  # a client span is labelled with the service it called
        parent = str(s.get("parent_span_id") or "")
        if parent in services and services[parent] != services[str(s.get("span_id"))]:
            callee.setdefault(parent, services[str(s.get("span_id"))])
    ordered = [(depth, spans[i]) for i, depth in tree_order(spans)]
    labels = []
    for depth, s in ordered:
        label = "  " * min(depth, 12) + _label(s, services.get(str(s.get("parent_span_id") or "")))
        sid = str(s.get("span_id"))
        if str(s.get("kind") or "") == "client" and sid in callee:
            label += f" → {callee[sid]}"
        labels.append(label)
    with_children = {str(s.get("parent_span_id") or "") for s in spans}
    rows = _rows(ordered, labels, with_children, collapse if collapse > 0 else 10**9)
    shown = rows[:max_spans]
    texts = [label + (f" ×{len(group)}" if len(group) > 1 else "") for label, group in shown]

    width = max(width, 50)
    dur_w = 10
    label_w = max(20, min(max(len(x) for x in texts), int(width * 0.55)))
    bar_w = max(10, width - label_w - dur_w - 4)
    ids = {str(s.get("span_id")) for s in spans}
    roots = sum(1 for s in spans if not s.get("parent_span_id"))
    orphans = sum(1 for s in spans if s.get("parent_span_id") and str(s["parent_span_id"]) not in ids)
    header = f"trace {tid}  {units.duration_ms(total)}  {len(spans)} spans"
    problems = []
    if roots != 1:
        problems.append(f"{roots} roots")
    if orphans:
        problems.append(f"{orphans} span(s) whose parent is missing")
    if problems:
        header += f"  (broken trace: {', '.join(problems)})"
    lines = [header, f"{SOLID} critical path   {LIGHT} off the critical path"]
    # A time axis over the bars: 0 on the left, the trace's length on the right.
    end_label = units.duration_ms(total)
    axis = "0" + " " * max(bar_w - 1 - len(end_label), 1) + end_label
    lines.append(f"{'':<{label_w}}  {axis}")

    for text, (_, group) in zip(texts, shown, strict=True):
        if len(text) > label_w:
            # Keep the "×N" suffix visible when cutting a long label.
            suffix = text[text.rfind(" ×"):] if len(group) > 1 else ""
            text = text[: label_w - 1 - len(suffix)] + "…" + suffix
        starts = [float(s.get("start_ms") or 0.0) - t0 for s in group]
        durs = [max(float(s.get("duration_ms") or 0.0), 0.0) for s in group]
        start, end = min(starts), max(a + d for a, d in zip(starts, durs, strict=True))
        a = int(start / total * bar_w)
        b = int(round(end / total * bar_w))
        a = min(max(a, 0), bar_w - 1)
        b = min(max(b, a + 1), bar_w)
        sids = {str(s.get("span_id")) for s in group}
        ch = SOLID if sids & critical else LIGHT
        bar = " " * a + ch * (b - a) + " " * (bar_w - b)
        line = f"{text:<{label_w}} |{bar}| {units.duration_ms(sum(durs)):>{dur_w}}"
        if culprit_span_id and culprit_span_id in sids:
            line += " " + MARK
        lines.append(line)
    if len(rows) > max_spans:
        hidden = sum(len(group) for _, group in rows[max_spans:])
        lines.append(f"... {hidden} more spans not shown")
    return "\n".join(lines)
