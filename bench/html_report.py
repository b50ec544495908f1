"""Bench: rendering slo-report.html for a large report (50 failing objectives x 300-span traces).

The report dict holds only exemplars and summaries, so the HTML renderer's worst case is many
failing objectives each with a capped trace. Prints the render time, the page size, and the
ratio to `json.dumps` of the same report (the cost of writing slo-report.json, measured in the
same run) so the figure means something on any machine.

    .venv/bin/python bench/html_report.py
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "slo"))

import report_fixture

from slo.report.html import render_html


def _best(fn, repeat: int = 5) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main() -> None:
    for n_traces, n_spans in ((1, 30), (10, 300), (50, 300)):
        report = report_fixture.big_report(n_traces=n_traces, spans_per_trace=n_spans)
        html = render_html(report)
        best, med = _best(lambda r=report: render_html(r))
        c0 = time.process_time()
        render_html(report)
        cpu = time.process_time() - c0
        jbest, _ = _best(lambda r=report: json.dumps(r))
        print(
            f"html_report traces={n_traces} spans/trace={n_spans}: render best {best * 1000:.0f} ms"
            f" median {med * 1000:.0f} ms (cpu {cpu * 1000:.0f} ms), {len(html) / 1e6:.2f} MB html,"
            f" {best / jbest:.1f}x json.dumps of the same report"
        )


if __name__ == "__main__":
    main()
