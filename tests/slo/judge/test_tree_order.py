"""One span-tree ordering (`slo.judge.critical_path.tree_order`) for every waterfall."""

from __future__ import annotations

import re

from slo.judge.critical_path import tree_order
from slo.report.html import render_trace_html
from slo.report.text import render


def sp(sid, parent, name, start, dur):
    return {"span_id": sid, "parent_span_id": parent, "service": "svc", "name": name,
            "kind": "internal", "start_ms": start, "duration_ms": dur, "status": "unset",
            "attributes": {}}


# Siblings that tie on start (longest first), tie on start and duration (span id decides),
# listed in the order that used to make the HTML and text waterfalls disagree; an orphan and a self-parented span become roots.
TRACE = {
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "spans": [
        sp("e", "r", "late", 30, 5),
        sp("l", "r", "long", 2, 20),
        sp("c", "r", "tie-c", 10, 8),
        sp("d", "r", "tie-d", 10, 8),
        sp("s", "r", "short", 2, 3),
        sp("k", "l", "grandchild", 3, 1),
        sp("r", "", "root", 0, 50),
        sp("o", "gone", "orphan", 1, 1),
        sp("x", "x", "self", 60, 1),
    ],
}
EXPECTED = ["root", "long", "grandchild", "short", "tie-c", "tie-d", "late", "orphan", "self"]


def test_parent_first_then_start_then_longest_then_span_id():
    spans = TRACE["spans"]
    order = tree_order(spans)
    assert [spans[i]["name"] for i, _ in order] == EXPECTED
    assert [d for _, d in order] == [0, 1, 2, 1, 1, 1, 1, 0, 0]
    # Input order does not matter.
    order_rev = tree_order(spans[::-1])
    assert [spans[::-1][i]["name"] for i, _ in order_rev] == EXPECTED


def test_text_and_html_waterfalls_draw_the_same_order():
    text_names = [line.split("|")[0].strip().removeprefix("svc ").split(" ")[0]
                  for line in render(TRACE, collapse=0).splitlines()[3:] if "|" in line]
    html = render_trace_html(TRACE)
    html_names = re.findall(r'class="lbl"[^>]*><tspan[^>]*>●</tspan> ([^<]*?)\s*<', html)
    assert text_names == EXPECTED
    assert html_names == EXPECTED
