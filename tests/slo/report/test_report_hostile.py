"""Data in the Markdown report (a pull-request comment) and junit.xml never becomes markup.

The Markdown is rendered by a real CommonMark renderer with raw HTML allowed (markdown-it-py,
as GitHub would pass HTML through its sanitizer): whatever span names, statements, attribute
values or messages hold, the result has only the report's own elements, no link, no image,
nothing a linkifier or mention filter would pick up, and every value shown whole."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from slo.report.writers import to_junit, to_markdown

_TOKENS = ["<img src=x onerror=alert(1)>", "[x](https://example.invalid)", "![i](http://x/y.png)",
           "<https://a.example>", "`", "``", "```", "~~~", "|", "||", "\n", "\n\n", "\r", "\x00",
           "\x1b[31m", "\u202e", "@octocat", "www.example.com", "https://x.io/p", "a@b.co",
           "#12", "*", "**", "_", "~~", "<script>alert(1)</script>", "<details>", "</details>",
           "&lt;", "&#60;", "&amp;", "\\", "$x$", "<!--", "-->", "> q", "# h", "- l", "1. n",
           "    ", " ", "x", "SELECT * FROM t WHERE a = ?", "GET /orders/<int:id>", "[^1]",
           "\ud800", ":smile:"]
hostile = st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=12).map("".join) | st.text(
    max_size=20)

ALLOWED = {"h2", "h3", "p", "table", "thead", "tbody", "tr", "th", "td", "code", "pre",
           "strong", "details", "summary"}
_LINKISH = re.compile(r"@[A-Za-z0-9]|://|www\.|#\d", re.IGNORECASE)
_MD = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")


class _Walk(HTMLParser):
    """Tags seen, text outside code, and the text of each code element and table cell."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.prose: list[str] = []
        self.codes: list[str] = []
        self._in_code = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        if tag in ("code", "pre"):
            self._in_code += 1
            if tag == "code":
                self.codes.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("code", "pre"):
            self._in_code -= 1

    def handle_data(self, data: str) -> None:
        if self._in_code:
            if self.codes:
                self.codes[-1] += data
        else:
            self.prose.append(data)


def _shown(value: str) -> str:
    """What a value may look like once shown: controls as spaces, whitespace folded."""
    return " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                           r"\ufeff\ud800-\udfff]", " ", value).split())


def _report(name: str, key: str, value: str, service: str) -> dict:
    trace = {"trace_id": "t1", "role": "candidate", "duration_ms": 10.0, "culprit_span_id": "s1",
             "spans": [{"span_id": "s1", "parent_span_id": "", "service": service,
                        "name": name, "start_ms": 0.0, "duration_ms": 10.0, "critical": True,
                        "attributes": {key: value}}]}
    return {
        "verdict": "fail", "run_id": value, "baseline_run_id": name,
        "run": {"spans": 1, "traces": 1},
        "results": [{"slo": name, "objective": key, "status": "fail", "unit": "ms",
                     "observed": 12.0, "budget": 10.0, "samples": 3, "trace_id": "t1",
                     "explanation": f"{value} in `{name}` and {service}",
                     "contributions": [{"group": value, "baseline_ms": 1.0, "candidate_ms": 2.0,
                                        "share": 1.0}]}],
        "findings": [{"detector": key, "fails": True, "service": service, "span": name,
                      "count": 2, "message": value}],
        "traces": {"t1": trace},
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=hostile, key=hostile, value=hostile, service=hostile)
def test_hostile_text_never_becomes_markup_links_or_mentions(name, key, value, service):
    report = _report(name, key, value, service)
    md = to_markdown(report)
    md.encode("utf-8")  # writable as it is (no lone surrogates)
    walk = _Walk()
    walk.feed(_MD.render(md))
    assert walk.tags <= ALLOWED, walk.tags - ALLOWED
    prose = "".join(walk.prose)
    assert not _LINKISH.search(prose.replace("\u2060", "\x00"))
    # every value is shown whole: in a code span of its own (table cells, labels)
    codes = {_shown(c) for c in walk.codes}
    for v in (name, key, value):
        assert _shown(v) in codes or not _shown(v), (v, codes)


@settings(max_examples=100, deadline=None)
@given(name=hostile, key=hostile, value=hostile, service=hostile)
def test_junit_is_valid_xml_for_any_text(name, key, value, service):
    root = ET.fromstring(to_junit(_report(name, key, value, service)).encode("utf-8"))
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 2
    assert cases[0].get("classname").startswith("slo.")
    assert cases[0].find("failure") is not None


def test_known_attacks_are_inert():
    md = to_markdown(_report("<img src=x onerror=alert(1)>", "[x](https://example.invalid)",
                             "@octocat ```` <script>", "www.example.com"))
    html = _MD.render(md)
    assert "<img" not in html and "<a " not in html and "<script" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # shown, as text


def test_terminal_view_shows_rich_markup_in_names_as_text():
    from rich.console import Console

    from slo.report.writers import print_report

    console = Console(record=True, width=160)
    name = "[bold red]x[/] [link=https://example.invalid]y[/link]"
    print_report({"run_id": "[blink]r[/]", "verdict": "pass",
                  "results": [{"slo": name, "objective": "o", "status": "pass", "samples": 1}]},
                 console)
    text = console.export_text()
    assert name in text and "[blink]r[/]" in text
