"""Writing a check's report: slo-report.json / .md / junit.xml / .html, and the terminal view.

One report dict (docs/architecture.md), several readers: CI systems read the exit code and
junit.xml, people read the pull-request comment (Markdown) or the terminal, and the HTML page
is for digging in. Every failure carries its explanation in all of them, so no reader has to
open a trace viewer to know where to look.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from slo import units
from slo.jsonsafe import strict_json
from slo.judge.completeness import sentence as completeness_sentence
from slo.report import text as waterfall_text
from slo.report.html import render_html
from slo.report.sarif import write_sarif

FILES = {"json": "slo-report.json", "md": "slo-report.md", "junit": "junit.xml",
         "html": "slo-report.html"}
_ICON = {"pass": "✅ pass", "fail": "❌ fail", "no_data": "⚠️ no data"}


def fmt_change(r: dict[str, Any]) -> str:
    """A regression's change with its interval and, for a latency regression that fails,
    what moved: 'p90 +883% [+610%, +1,100%], 99%; tail: 12% of requests'."""
    if r.get("kind") != "regression":
        return ""
    text = units.result_change(r, r.get("unit") or "")
    if text and r.get("status") == "fail" and r.get("pattern") \
            and r.get("affected_share") is not None:
        text += f"; {r['pattern']}: {units.share(r['affected_share'])} of requests"
    return text


def fmt_observed(r: dict[str, Any]) -> str:
    """The observed value; for a regression also its change (see fmt_change)."""
    change = fmt_change(r)
    value = units.value(r.get("observed"), r.get("unit"))
    return f"{value} ({change})" if change else value


def failures(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report.get("results", []) if r.get("status") != "pass"]


def failing_findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in report.get("findings", []) if f.get("fails")]


def waterfall(report: dict[str, Any], trace_id: str | None, width: int = 100) -> str | None:
    trace = (report.get("traces") or {}).get(trace_id or "")
    if not trace:
        return None
    return waterfall_text.render(trace, trace.get("culprit_span_id"), width=width)


# ---------------------------------------------------------------------------------------------
# Markdown


# Everything from the data (span names, statements, attribute values, SLO names, messages)
# reaches a pull-request comment: none of it may become markup, a link, an image or a mention.
# Data in tables goes in code spans (shown literally everywhere); prose is escaped.

_CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]+")
# what starts markup in the middle of a line (emphasis, code, links, images, HTML, entities,
# tables, math); prose from here never starts a line, so block markers (#, >, -) are inert
_PUNCT = re.compile(r"([\\`*_~\[\]<>|&$!])")
_WJ = "\u2060"  # word joiner: invisible, but no autolinker or mention filter matches across it
_LINKISH = re.compile(r"@|:(?=//)|#(?=\d)|(?<=www)(?=\.)", re.IGNORECASE)  # a WJ goes after


def _one_line(text: Any) -> str:
    """Control, line-separator and bidi-override characters become one space."""
    return _CONTROL.sub(" ", str(text))


def md_text(text: Any) -> str:
    """Data as inert Markdown prose: no emphasis, HTML, link, image, autolink or mention."""
    return _PUNCT.sub(r"\\\1", _LINKISH.sub(lambda m: m.group() + _WJ, _one_line(text)))


def md_code(text: Any, in_table: bool = True) -> str:
    """Data as a code span: its text shown literally, whatever backticks it holds."""
    body = _one_line(text)
    if in_table:
        body = body.replace("|", "\\|")  # GFM splits cells even inside code spans
    if not body.strip():
        return "` `"  # (an empty code span would not be one)
    fence = "`" * (max((len(m) for m in re.findall("`+", body)), default=0) + 1)
    pad = " " if body[0] == "`" or body[-1] == "`" or (body[0] == " " and body[-1] == " ") \
        else ""
    return f"{fence}{pad}{body}{pad}{fence}"


_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def md_prose(text: Any) -> str:
    """An explanation: its `code` parts as safe code spans, the rest escaped as prose."""
    out, last = [], 0
    s = _one_line(text)
    for m in _CODE_SPAN.finditer(s):
        between = md_text(s[last:m.start()])
        if not between and out:
            between = _WJ  # two code spans touching would merge their backtick fences
        out += [between, md_code(m.group(2), in_table=False)]
        last = m.end()
    out.append(md_text(s[last:]))
    return "".join(out)


def _md_cell(text: Any) -> str:
    """A table cell of our own words and numbers (no data): pipes and newlines only."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fenced(text: str, info: str = "text") -> list[str]:
    """A fenced code block that no line of `text` can close."""
    longest = max((len(m) for m in re.findall("`{3,}", text)), default=0)
    fence = "`" * max(3, longest + 1)
    lines = (_one_line(line) for line in text.split("\n"))
    return [fence + info, *lines, fence]


def _p50_mean(c: dict[str, Any], side: str) -> str:
    text = units.value(c.get(f"{side}_ms"), "ms")
    mean = c.get(f"{side}_critical_ms", c.get(f"{side}_mean_ms"))  # per-request mean
    return f"{text} ({units.value(mean, 'ms')})" if mean is not None else text


def to_markdown(report: dict[str, Any], max_waterfalls: int = 5) -> str:
    """The report as GitHub-flavoured Markdown (a PR comment or `$GITHUB_STEP_SUMMARY`)."""
    verdict = report.get("verdict", "fail")
    head = "✅ SLO check passed" if verdict == "pass" else "❌ SLO check failed"
    run = report.get("run") or {}
    out = [f"## {head}", ""]
    facts = [f"run {md_code(report.get('run_id') or '-', in_table=False)}"]
    if report.get("baseline_run_id"):
        facts.append(f"baseline {md_code(report['baseline_run_id'], in_table=False)}")
    if run.get("spans") is not None:
        facts.append(f"{md_text(run.get('spans'))} spans, {md_text(run.get('traces'))} traces")
    out += [" · ".join(facts), ""]
    if whole := completeness_sentence(report.get("completeness")):
        out += [f"Traces: {_md_cell(whole)}", ""]
    out += ["| SLO | objective | status | observed | budget | baseline | samples |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in report.get("results", []):
        out.append("| " + " | ".join((md_code(r["slo"]), md_code(r["objective"]), *(
            _md_cell(x) for x in (
                _ICON.get(r["status"]) or md_code(r["status"]),
                fmt_observed(r), units.budget(r),
                units.value(r.get("baseline"), r.get("unit")), md_text(r.get("samples", 0)))))) + " |")
    bad = failures(report)
    if bad:
        out += ["", "### Why", ""]
        shown = 0
        for r in bad:
            out.append(f"**{md_code(r['slo'], in_table=False)} · "
                       f"{md_code(r['objective'], in_table=False)}**: "
                       f"{md_prose(r.get('explanation', ''))}")
            if r.get("contributions"):
                out += ["", "| span group | baseline p50 (mean) | candidate p50 (mean) | "
                        "share of added time |", "| --- | --- | --- | --- |"]
                for c in r["contributions"]:
                    out.append(f"| {md_code(c['group'])} | {_p50_mean(c, 'baseline')} | "
                               f"{_p50_mean(c, 'candidate')} | "
                               f"{float(c.get('share') or 0) * 100:.0f}% |")
            wf = waterfall(report, r.get("trace_id"), 100) if shown < max_waterfalls else None
            if wf:
                shown += 1
                out += ["", "<details><summary>worst trace</summary>", "", *_fenced(wf), "",
                        "</details>"]
            out.append("")
    findings = report.get("findings") or []
    if findings:
        out += ["", "### Findings", "", "| detector | fails | where | count | message |",
                "| --- | --- | --- | --- | --- |"]
        for f in findings:
            where = f"{f.get('service', '')} {f.get('span', '')}".strip()
            out.append("| " + " | ".join((
                md_code(f.get("detector", "")), "yes" if f.get("fails") else "no",
                md_code(where), md_code(f.get("count", "")),
                md_code(f.get("message", "")))) + " |")
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# JUnit


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(value: Any) -> str:
    """Text XML 1.0 can carry: control characters and lone surrogates become U+FFFD (the
    escaping of <, & and quotes is ElementTree's)."""
    return _NOT_XML.sub("\ufffd", str(value))


def to_junit(report: dict[str, Any]) -> str:
    """One test case per objective (and per failing finding); failures carry the explanation.

    Valid XML whatever the data holds (names and messages come from spans)."""
    cases: list[ET.Element] = []
    n_fail = 0
    for r in report.get("results", []):
        tc = ET.Element("testcase", classname=_xml(f"slo.{r['slo']}"), name=_xml(r["objective"]),
                        time="0")
        if r["status"] != "pass":
            n_fail += 1
            f = ET.SubElement(tc, "failure", type=_xml(r["status"]),
                              message=_xml(str(r.get("explanation", ""))[:2000]))
            lines = [r.get("explanation", ""),
                     f"observed {units.value(r.get('observed'), r.get('unit'))}, budget "
                     f"{units.budget(r)}, baseline {units.value(r.get('baseline'), r.get('unit'))}, "
                     f"samples {r.get('samples')}"]
            if r.get("trace_id"):
                lines.append(f"trace {r['trace_id']}")
            wf = waterfall(report, r.get("trace_id"), 100)
            if wf:
                lines += ["", wf]
            f.text = _xml("\n".join(lines))
        cases.append(tc)
    for fd in failing_findings(report):
        tc = ET.Element("testcase", classname=_xml(f"slo.findings.{fd.get('detector')}"),
                        name=_xml(f"{fd.get('service', '')} {fd.get('span', '')}".strip()
                                  or "finding"), time="0")
        n_fail += 1
        f = ET.SubElement(tc, "failure", type="finding",
                          message=_xml(str(fd.get("message", ""))[:2000]))
        f.text = _xml(json.dumps({k: v for k, v in fd.items()
                                  if not isinstance(v, dict | list)}, indent=1, default=str))
        cases.append(tc)
    suite = ET.Element("testsuite", name="slo", tests=str(len(cases)), failures=str(n_fail),
                       errors="0", skipped="0", timestamp=_xml(report.get("generated_at", "")))
    suite.extend(cases)
    root = ET.Element("testsuites", name="slo check", tests=str(len(cases)),
                      failures=str(n_fail))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


# ---------------------------------------------------------------------------------------------
# Files


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write(path: Path, text: str) -> None:
    """Atomic write (readers never see half a report) with the usual file mode."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:  # lone surrogates
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reports(report: dict[str, Any], report_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the four report files into `report_dir` (created); returns their paths."""
    report = strict_json(report)
    d = Path(report_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = {k: d / v for k, v in FILES.items()}
    _write(paths["json"], json.dumps(report, indent=1, allow_nan=False, default=str) + "\n")
    _write(paths["md"], to_markdown(report))
    _write(paths["junit"], to_junit(report))
    _write(paths["html"], render_html(report))
    paths["sarif"] = write_sarif(report, d)
    return paths


# ---------------------------------------------------------------------------------------------
# Terminal


_STYLE = {"pass": "green", "fail": "bold red", "no_data": "yellow"}


def print_report(report: dict[str, Any], console: Console | None = None,
                 max_waterfalls: int = 5) -> None:
    """The objectives as a table, then per failure its explanation and trace waterfall."""
    console = console or Console()
    table = Table(title=Text(f"SLO check · run {report.get('run_id') or '-'}"
                             + (f" vs baseline {report['baseline_run_id']}"
                                if report.get("baseline_run_id") else "")))
    for col, just in (("SLO", "left"), ("objective", "left"), ("status", "left"),
                      ("observed", "right"), ("budget", "right"), ("baseline", "right"),
                      ("samples", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in report.get("results", []):
        table.add_row(Text(str(r["slo"])), Text(str(r["objective"])),  # Text: no Rich markup
                      Text(r["status"], style=_STYLE.get(r["status"], "")),
                      fmt_observed(r), units.budget(r),
                      units.value(r.get("baseline"), r.get("unit")), str(r.get("samples", 0)))
    console.print(table)
    if whole := completeness_sentence(report.get("completeness")):
        console.print(Text(f"traces: {whole}",
                           style="yellow" if "incomplete" in whole or "Sampled" in whole else ""))
    width = max(60, min(console.width or 100, 140))
    shown = 0
    for r in failures(report):
        console.print(Text(f"✗ {r['slo']} · {r['objective']}: ", style="bold red"),
                       Text(r.get("explanation", "")), soft_wrap=False)
        wf = waterfall(report, r.get("trace_id"), width) if shown < max_waterfalls else None
        if wf:
            shown += 1
            console.print(Text(wf), soft_wrap=True, highlight=False)
        console.print()
    for f in report.get("findings") or []:
        style = "bold red" if f.get("fails") else "yellow"
        console.print(Text(f"{'✗' if f.get('fails') else '•'} finding {f.get('detector')}: ",
                           style=style), Text(str(f.get("message", ""))))
    verdict = report.get("verdict")
    console.print(Text(f"verdict: {verdict}", style=_STYLE.get(str(verdict), "")))
