"""slo-report.html in a real headless Chromium (Debian's /usr/bin/chromium via Playwright).

Structure tests prove the markup; this proves a browser draws it: the waterfall is visible
and has a size, the page script runs without console or page errors, hovering and clicking a
span shows its attributes (hostile ones as text), and the page makes no network request.
A screenshot is kept under the test's tmp dir and copied to /tmp/report-screenshot.png.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from slo.report.html import render_html, render_trace_html

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOT_COPY = Path("/tmp/report-screenshot.png")


def _fixture_module():
    path = Path(__file__).resolve().parents[1] / "slo" / "report_fixture.py"
    spec = importlib.util.spec_from_file_location("slo_report_fixture_e2e", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rf = _fixture_module()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Watch:
    """Console errors, page errors, dialogs and every non-file request of one page."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", self._dialog)
        page.on("request", self._request)

    def _dialog(self, d):
        self.dialogs.append(d.message)
        d.dismiss()

    def _request(self, r):
        if not r.url.startswith("file://"):
            self.requests.append(r.url)

    def assert_clean(self):
        assert self.errors == []
        assert self.dialogs == []
        assert self.requests == []


def _open(browser, html: str, path: Path):
    path.write_text(html, encoding="utf-8")
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(30_000)
    watch = Watch(page)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, watch


def test_report_renders_waterfall_and_span_details(browser, tmp_path):
    page, watch = _open(browser, render_html(rf.sample_report()), tmp_path / "slo-report.html")
    try:
        assert page.locator("header.verdict").inner_text().startswith("FAIL")
        # Every failed objective's waterfall is drawn with a real size.
        failures = page.locator("article.failure")
        assert failures.count() == 3
        for i in range(failures.count()):
            svg = failures.nth(i).locator("svg.wf-svg").first
            assert svg.is_visible()
            box = svg.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 40, box
        # Candidate and baseline sit side by side at this width.
        figs = page.locator("#fail-1 figure.wf")
        a, b = figs.nth(0).bounding_box(), figs.nth(1).bounding_box()
        assert abs(a["y"] - b["y"]) < 2 and b["x"] > a["x"] + a["width"] - 1

        tip = page.locator("#tip")
        culprit = page.locator("#fail-1 figure.wf").first.locator("g.row.culprit")
        culprit.scroll_into_view_if_needed()
        culprit.hover()
        tip.wait_for(state="visible")
        text = tip.inner_text()
        assert rf.CULPRIT_STATEMENT in text and "culprit" in text
        assert rf.EVIL_ATTR in text  # shown as text, not parsed as markup

        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        shutil.copyfile(shot, SHOT_COPY)
        page.screenshot(path=str(tmp_path / "report-full.png"), full_page=True)

        # Click pins the span named <script>: its name is text, and nothing ran.
        evil = page.locator("#fail-1 figure.wf").first.locator("g.row", has_text=rf.EVIL_NAME)
        evil.click()
        assert "pinned" in (tip.get_attribute("class") or "")
        assert rf.EVIL_NAME in tip.inner_text()
        page.mouse.move(5, 5)
        assert tip.is_visible()  # pinned: stays while the pointer leaves
        page.keyboard.press("Escape")
        tip.wait_for(state="hidden")

        # A finding's link jumps to its trace's waterfall.
        page.locator("table.findings a.trace-link").nth(1).click()
        target = page.evaluate("location.hash").lstrip("#")
        assert page.locator(f"#{target} svg.wf-svg").is_visible()

        cdf = page.locator("svg.cdf").first
        cdf.scroll_into_view_if_needed()
        assert cdf.bounding_box()["height"] > 100
        watch.assert_clean()
    finally:
        page.close()


def test_trace_page_renders_both_traces(browser, tmp_path):
    report = rf.sample_report()
    html = render_trace_html(
        report["traces"][rf.CAND_TRACE], report["traces"][rf.BASE_TRACE], title="order-detail p95"
    )
    page, watch = _open(browser, html, tmp_path / "trace.html")
    try:
        svgs = page.locator("svg.wf-svg")
        assert svgs.count() == 2
        for i in range(2):
            assert svgs.nth(i).is_visible() and svgs.nth(i).bounding_box()["height"] > 40
        page.locator("g.row.culprit").click()
        assert "db.query.text" in page.locator("#tip").inner_text()
        page.screenshot(path=str(tmp_path / "trace.png"))
        watch.assert_clean()
    finally:
        page.close()


def test_long_trace_opens_scrolled_to_its_culprit(browser, tmp_path):
    report = rf.big_report(n_traces=1, spans_per_trace=300)
    page, watch = _open(browser, render_html(report), tmp_path / "long.html")
    try:
        box = page.locator("#fail-1 .wf-scroll")
        assert box.evaluate("e => e.scrollHeight > e.clientHeight")  # it does scroll
        top = box.evaluate(
            "e => e.querySelector('.row.culprit').getBoundingClientRect().top"
            " - e.getBoundingClientRect().top"
        )
        assert 0 <= top <= box.evaluate("e => e.clientHeight")
        # The time axis sits outside the scrolling box, so it stays in view.
        assert page.locator("#fail-1 svg.wf-axis").is_visible()
        watch.assert_clean()
    finally:
        page.close()


def _slices_module():
    """tests/slo/judge/test_check_slices.py: real reports of gate-like interleaved slices."""
    import sys

    here = Path(__file__).resolve().parents[1] / "slo"
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))  # its spangen import
    spec = importlib.util.spec_from_file_location("slo_check_slices_e2e",
                                                  here / "judge" / "test_check_slices.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_interval_plot_shows_the_change_against_the_threshold(browser, tmp_path):
    cs = _slices_module()
    report = cs.check(*cs.gate_like(cand_scale=1.6, seed=1))
    r = cs.reg(report, "order-detail")
    assert r["status"] == "fail"
    page, watch = _open(browser, render_html(report), tmp_path / "slo-report.html")
    try:
        art = page.locator("#slo-order-detail")
        svg = art.locator("svg.iv")
        svg.scroll_into_view_if_needed()
        assert svg.is_visible()
        box = svg.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 60, box
        # One row per statistic; the failing ones are drawn right of their threshold line.
        assert svg.locator("line.ci").count() == 3
        failing = [c for c in r["comparisons"] if c["significant"]]
        assert failing and svg.locator("line.ci.fails").count() == len(failing)
        ci = svg.locator("line.ci.fails").first.bounding_box()
        thr = svg.locator("line.thr").first.bounding_box()
        assert ci["x"] > thr["x"] + thr["width"], (ci, thr)
        # The interval in words beside the observed value, and what moved.
        text = art.inner_text()
        assert "%]" in text and "shift: " in text
        # A passing SLO's intervals straddle "no change" and are not drawn as failing.
        ok = page.locator("#slo-stock svg.iv")
        assert ok.count() == 1 and ok.locator("line.ci.fails").count() == 0
        shot = tmp_path / "intervals.png"
        art.screenshot(path=str(shot))
        assert shot.stat().st_size > 5_000
        shutil.copyfile(shot, Path("/tmp/report-intervals.png"))
        watch.assert_clean()
    finally:
        page.close()
