"""Structure tests on slo-report.html and the standalone trace page.

The page is parsed with the standard library's HTML parser (the same tokenizer rules a browser
uses for where tags start and end), so the escaping checks look at what a browser would see.
"""

from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser

import numpy as np
import pytest
import report_fixture as rf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slo.report.html import render_html, render_trace_html, service_colors

VOID = {"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "wbr", "source"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.text: list[str] = []

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def iter(self):
        yield self
        for c in self.children:
            yield from c.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str):
        for n in self.iter():
            if tag and n.tag != tag:
                continue
            if cls and cls not in n.classes():
                continue
            if any(n.attrs.get(k.replace("_", "-")) != v for k, v in attrs.items()):
                continue
            yield n

    def all_text(self) -> str:
        return "".join(self.text) + "".join(c.all_text() for c in self.children)


class TreeBuilder(HTMLParser):
    """A minimal DOM: enough to ask which element holds which."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.cur = self.root
        self.scripts: list[tuple[dict, str]] = []

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, dict(attrs), self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.text.append(data)
        if self.cur.tag == "script":
            self.scripts.append((self.cur.attrs, data))


def parse(html: str) -> TreeBuilder:
    tb = TreeBuilder()
    tb.feed(html)
    tb.close()
    return tb


def page_data(tb: TreeBuilder) -> dict:
    (blob,) = [n for n in tb.root.find_all("script", id="slo-data")]
    return json.loads(blob.all_text())


@pytest.fixture(scope="module")
def sample():
    report = rf.sample_report()
    html = render_html(report)
    return report, html, parse(html)


def test_every_failed_objective_has_its_waterfalls(sample):
    report, _, tb = sample
    failed = [r for r in report["results"] if r["status"] == "fail"]
    assert len(failed) == 3
    for r in failed:
        (art,) = list(tb.root.find_all("article", data_objective=f"{r['slo']}/{r['objective']}"))
        figs = list(art.find_all("figure", cls="wf"))
        trace_ids = [f.attrs["data-trace-id"] for f in figs]
        assert trace_ids[0] == r["trace_id"]
        if r.get("baseline_trace_id"):
            assert trace_ids == [r["trace_id"], r["baseline_trace_id"]]
        # Every span of the trace is drawn, with an <svg> that has a size.
        assert len(list(figs[0].find_all("g", cls="row"))) == len(
            report["traces"][r["trace_id"]]["spans"]
        )
        (svg,) = list(figs[0].find_all("svg", cls="wf-svg"))
        assert re.fullmatch(r"0 \d+ \d+ \d+", svg.attrs["viewbox"])  # the parser lowercases names


def test_culprit_is_marked_and_its_details_say_so(sample):
    report, _, tb = sample
    data = page_data(tb)
    trace = report["traces"][rf.CAND_TRACE]
    culprits = [
        (fig, row)
        for fig in tb.root.find_all("figure", cls="wf", data_trace_id=rf.CAND_TRACE)
        for row in fig.find_all("g", cls="culprit")
    ]
    assert culprits, "the culprit span is not marked"
    for fig, row in culprits:
        assert row.attrs.get("data-culprit") == "true"
        assert "SELECT" in row.all_text()
        detail = data[fig.attrs["data-wf"]][int(row.attrs["data-i"])]
        assert detail["span_id"] == trace["culprit_span_id"] and detail["culprit"] is True
        assert detail["attributes"]["db.query.text"] == rf.CULPRIT_STATEMENT
        assert "culprit" in fig.all_text()
    # Only one culprit per waterfall, and none in the baseline's.
    for fig in tb.root.find_all("figure", cls="wf"):
        n = len(list(fig.find_all("g", cls="culprit")))
        assert n == (1 if fig.attrs["data-trace-id"] == rf.CAND_TRACE else 0)


def test_critical_path_is_marked(sample):
    report, _, tb = sample
    fig = next(tb.root.find_all("figure", cls="wf", data_trace_id=rf.CAND_TRACE))
    crit_rows = list(fig.find_all("g", cls="crit"))
    n_crit = sum(1 for s in report["traces"][rf.CAND_TRACE]["spans"] if s["critical"])
    assert len(crit_rows) == n_crit
    assert all(list(r.find_all("rect", cls="cp")) for r in crit_rows)


def test_span_names_and_attributes_are_escaped(sample):
    _, html, tb = sample
    assert rf.EVIL_NAME not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "onerror=alert(2)>" not in html
    # Exactly our two script elements: the JSON data block and the page script.
    assert len(tb.scripts) == 2
    assert sum(1 for _ in tb.root.find_all("script")) == 2
    assert not list(tb.root.find_all("img"))
    # The JSON block round-trips the hostile strings untouched.
    data = page_data(tb)
    attrs = [a for spans in data.values() for s in spans for a in s["attributes"].values()]
    names = [s["name"] for spans in data.values() for s in spans]
    assert rf.EVIL_ATTR in attrs and rf.EVIL_NAME in names
    # Span names appear as text, never as markup.
    assert any(rf.EVIL_NAME in n.all_text() for n in tb.root.find_all("text", cls="lbl"))


def test_no_external_urls(sample):
    _, html, tb = sample
    assert not re.search(r"https?://", html)
    for n in tb.root.iter():
        for attr in ("src", "href", "action", "xlink:href", "data"):
            val = n.attrs.get(attr)
            assert val is None or val.startswith("#"), (n.tag, attr, val)
    assert "@import" not in html and "url(" not in html


def test_url_in_span_attribute_stays_inert():
    report = rf.sample_report()
    span = report["traces"][rf.CAND_TRACE]["spans"][0]
    span["attributes"]["http.url"] = "https://evil.example/x.js"
    span["name"] = "<img src='https://evil.example/p.png'>"
    tb = parse(render_html(report))
    for n in tb.root.iter():
        assert n.tag != "img"
        for attr in ("src", "href"):
            assert not (n.attrs.get(attr) or "").startswith("http")


def test_failures_first_and_links_resolve(sample):
    _, html, tb = sample
    for table in tb.root.find_all("table", cls="objectives"):
        statuses = [
            b.all_text() for tr in table.find_all("tr") for b in tr.find_all("span", cls="badge")
        ]
        order = {"fail": 0, "no_data": 1, "pass": 2}
        assert statuses == sorted(statuses, key=order.__getitem__)
    slo_badges = [a.attrs["id"] for a in tb.root.find_all("article", cls="slo")]
    assert slo_badges == ["slo-order-detail", "slo-product-list", "slo-checkout"]
    ids = {n.attrs["id"] for n in tb.root.iter() if n.attrs.get("id")}
    hrefs = [n.attrs["href"] for n in tb.root.find_all("a") if n.attrs.get("href")]
    assert hrefs and all(h[1:] in ids for h in hrefs)


def test_findings_link_to_their_trace_waterfall(sample):
    report, _, tb = sample
    rows = list(next(tb.root.find_all("table", cls="findings")).find_all("tr"))[1:]
    assert len(rows) == len(report["findings"])
    for f in report["findings"]:
        (row,) = [r for r in rows if f["message"] in r.all_text()]
        (link,) = list(row.find_all("a", cls="trace-link"))
        (fig,) = list(tb.root.find_all(id=link.attrs["href"][1:]))
        assert fig.attrs["data-trace-id"] == f["trace_id"]
        if f.get("statement"):
            assert f["statement"] in row.all_text()
    # The broken trace has two roots: both spans drawn, the error marked.
    fig = next(tb.root.find_all("figure", data_trace_id=rf.BROKEN_TRACE))
    assert len(list(fig.find_all("g", cls="row"))) == 2
    assert len(list(fig.find_all("g", cls="err"))) == 1


def test_distributions_and_run_facts(sample):
    report, html, tb = sample
    cdfs = list(tb.root.find_all("svg", cls="cdf"))
    assert len(cdfs) == 2  # one per SLO with latencies; checkout has none
    first = cdfs[0]
    assert {p.attrs["class"] for p in first.find_all("polyline")} == {"series base", "series cand"}
    assert len(list(first.find_all("line", cls="budget"))) == 1
    assert "latency_p95 400 ms" in first.all_text()
    run = next(tb.root.find_all("table", cls="run")).all_text()
    for needle in ("run-cand", "run-base", "51234", "40211", "2100", "70.0", "30.0 s"):
        assert needle in run
    assert "FAIL" in next(tb.root.find_all("header", cls="verdict")).all_text()


@pytest.mark.parametrize(
    "report",
    [
        {},
        rf.minimal_report(),
        {"verdict": "pass", "results": [], "findings": None, "slos": None, "traces": None},
        {
            "results": [{"status": "fail", "trace_id": "t", "baseline_trace_id": "u"}],
            "traces": {"t": {"spans": None}, "u": "junk"},
            "slos": [{"name": "x", "latency_ms": None}],
        },
        {
            "results": [
                {
                    "slo": "a",
                    "status": "fail",
                    "trace_id": "t",
                    "unit": "ms",
                    "observed": float("nan"),
                }
            ],
            "traces": {
                "t": {
                    "trace_id": "t",
                    "duration_ms": 0,
                    "spans": [
                        {
                            "span_id": "1",
                            "parent_span_id": "2",
                            "start_ms": None,
                            "duration_ms": -5,
                        },
                        {"span_id": "2", "parent_span_id": "1", "start_ms": 3, "duration_ms": 1e9},
                        {"span_id": "2", "parent_span_id": "2", "attributes": ["not", "a", "dict"]},
                        {
                            "span_id": "3",
                            "attributes": {
                                "nan": float("nan"),
                                "inf": float("-inf"),
                                "b": b"\xff",
                                "o": object(),
                                "l": (1, [2.5]),
                            },
                        },
                    ],
                }
            },
            "slos": [
                {
                    "name": "a",
                    "latency_ms": {"candidate": [0, 0, 0], "baseline": ["x", None]},
                    "budgets_ms": {"latency_p95": None},
                }
            ],
        },
    ],
    ids=["empty", "minimal", "nulls", "junk-traces", "cycles-and-bad-numbers"],
)
def test_tolerates_missing_and_odd_keys(report):
    html = render_html(report)
    tb = parse(html)
    assert next(tb.root.find_all("header", cls="verdict"))
    # The JSON block is strict JSON (JSON.parse rejects NaN): the page script would die.
    json.loads(
        next(tb.root.find_all("script", id="slo-data")).all_text(),
        parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"),
    )


def test_minimal_report_says_trace_is_missing():
    tb = parse(render_html(rf.minimal_report()))
    text = tb.root.all_text()
    assert "deadbeef" in text and "not in the report" in text
    assert "no baseline" in text


def test_passing_report_has_no_failures_section():
    report = rf.sample_report()
    report["verdict"] = "pass"
    for r in report["results"]:
        r["status"] = "pass"
    report["findings"] = []
    tb = parse(render_html(report))
    assert not list(tb.root.find_all(id="failures"))
    assert "PASS" in next(tb.root.find_all("header", cls="verdict-pass")).all_text()


def _bar_width(fig) -> float:
    row = next(fig.find_all("g", cls="row"))
    return float(next(row.find_all("rect", cls="bar")).attrs["width"])


def test_trace_page_draws_baseline_on_the_same_scale():
    report = rf.sample_report()
    cand, base = report["traces"][rf.CAND_TRACE], report["traces"][rf.BASE_TRACE]
    tb = parse(render_trace_html(cand, base, title="order-detail <p95>"))
    figs = list(tb.root.find_all("figure", cls="wf"))
    assert [f.attrs["data-trace-id"] for f in figs] == [rf.CAND_TRACE, rf.BASE_TRACE]
    ratio = _bar_width(figs[0]) / _bar_width(figs[1])
    assert ratio == pytest.approx(cand["duration_ms"] / base["duration_ms"], rel=0.05)
    assert next(tb.root.find_all("title")).all_text() == "order-detail <p95>"
    assert len(list(figs[0].find_all("g", cls="culprit"))) == 1
    # The baseline marks the span that plays the culprit's part (same service and name).
    (match,) = [
        r for r in figs[1].find_all("g", cls="row") if list(r.find_all("rect", cls="matchbox"))
    ]
    assert "SELECT" in match.all_text() and "inventory-service: SELECT" in figs[1].all_text()
    assert len(tb.scripts) == 2


def test_trace_page_without_baseline_and_same_macro_as_report():
    report = rf.sample_report()
    trace = report["traces"][rf.CAND_TRACE]
    page = parse(render_trace_html(trace))
    (fig,) = list(page.root.find_all("figure", cls="wf"))
    rows = [r.all_text() for r in fig.find_all("g", cls="row")]
    # The report draws the same trace with the same rows (one shared macro).
    in_report = next(
        parse(render_html(report)).root.find_all("figure", data_trace_id=rf.CAND_TRACE)
    )
    assert [r.all_text() for r in in_report.find_all("g", cls="row")] == rows
    assert "Trace " + rf.CAND_TRACE in page.root.all_text()
    render_trace_html({})  # an empty trace still gives a page


def test_service_colours_are_distinct_and_stable():
    names = [f"svc-{i}" for i in range(14)]
    colours = service_colors(names)
    assert len(set(colours.values())) == 14
    assert service_colors(reversed(names)) == colours


def test_large_report_renders_fast():
    report = rf.big_report(n_traces=50, spans_per_trace=300)
    render_html(report)  # warm the template cache
    t0 = time.process_time()  # CPU time: other processes on a loaded box do not count
    html = render_html(report)
    elapsed = time.process_time() - t0
    # About 0.5 s on an idle core (bench/html_report.py); a generous bound against flakes.
    assert elapsed < 5.0, elapsed
    assert html.count('class="wf"') == 50


_TOKENS = list("<>&\"'/=! sciptrSCRIPT-{}%#\n\x00\u2028") + ["</script>", "<!--", "]]>", "{{"]
hostile = st.lists(st.sampled_from(_TOKENS), max_size=30).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=hostile, key=hostile, value=hostile, service=hostile)
def test_hostile_span_text_never_becomes_markup(name, key, value, service):
    trace = {
        "trace_id": "t1",
        "role": "candidate",
        "duration_ms": 10.0,
        "culprit_span_id": "s1",
        "spans": [
            {
                "span_id": "s1",
                "parent_span_id": "",
                "service": service,
                "name": name,
                "start_ms": 0.0,
                "duration_ms": 10.0,
                "critical": True,
                "attributes": {key: value},
            }
        ],
    }
    for html in (
        render_trace_html(trace, title=name),
        render_html(
            {
                "results": [
                    {
                        "slo": name,
                        "objective": key,
                        "status": "fail",
                        "explanation": value,
                        "trace_id": "t1",
                    }
                ],
                "traces": {"t1": trace},
            }
        ),
    ):
        tb = parse(html)
        assert len(tb.scripts) == 2
        assert sum(1 for _ in tb.root.find_all("script")) == 2
        (detail,) = [s for spans in page_data(tb).values() for s in spans]
        assert detail["name"] == name and detail["attributes"] == {key: value}


def test_baseline_marks_only_an_unambiguous_same_span_and_never_its_own_culprit():
    report = rf.sample_report()
    cand, base = report["traces"][rf.CAND_TRACE], report["traces"][rf.BASE_TRACE]
    base["culprit_span_id"] = base["spans"][0]["span_id"]  # check.py may set one on any trace
    figs = list(parse(render_trace_html(cand, base)).root.find_all("figure", cls="wf"))
    assert not list(figs[1].find_all("g", cls="culprit"))
    assert len(list(figs[1].find_all("rect", cls="matchbox"))) == 1
    # Culprit is a childless `order-service GET`; the baseline has several such calls and
    # none with the same children: no guess is drawn.
    cand["culprit_span_id"] = "a" * 15 + "9"
    for s in base["spans"]:
        s["parent_span_id"] = s["parent_span_id"] if s["name"] != rf.EVIL_NAME else "nope"
    figs = list(parse(render_trace_html(cand, base)).root.find_all("figure", cls="wf"))
    assert len(list(figs[0].find_all("g", cls="culprit"))) == 1
    assert not list(figs[1].find_all("rect", cls="matchbox"))


def test_numpy_numbers_from_an_in_memory_report():
    report = rf.sample_report()
    r = report["results"][1]
    r["observed"], r["samples"] = np.float64(612.5), np.int64(1500)
    span = report["traces"][rf.CAND_TRACE]["spans"][0]
    span["start_ms"], span["duration_ms"] = np.int64(0), np.float32(569.0)
    span["attributes"]["n"] = np.int64(3)
    tb = parse(render_html(report))
    assert "612 ms" in next(tb.root.find_all("article", id="fail-1")).all_text()
    fig = next(tb.root.find_all("figure", data_trace_id=rf.CAND_TRACE))
    assert _bar_width(fig) > 100
    assert page_data(tb)[fig.attrs["data-wf"]][0]["attributes"]["n"] == "3"
