"""`slo-report.sarif`: failed objectives and findings as SARIF 2.1.0, for code scanning.

Reviewers look at the pull request's diff, not at a CI artifact; code-scanning tools (GitHub's
`upload-sarif`, GitLab, Azure DevOps, IDE viewers) turn SARIF results into annotations on the
lines they name. So every failed objective and every finding becomes one result whose
location is, in this order:

1. the code attributes of a span involved (`code.file.path`/`code.filepath`,
   `code.line.number`/`code.lineno`, `code.function.name`/`code.function`, stable and old
   semantic-convention names): the culprit span of the exemplar trace and its ancestors, then
   the selected span's subtree; for a finding, its evidence span and ancestors;
2. else the SLO's line in the spec file (findings: the detector's line under `detectors:`, else
   the first line), which is also in the repository and is what a reviewer would change to
   accept the new behaviour.

Paths under the working directory are written relative to it (`%SRCROOT%`), which is how the
upload actions match them to the repository's files. Passing objectives are not results:
code scanning shows alerts, and a pass is not one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
FILE_KEYS = ("code.file.path", "code.filepath")
LINE_KEYS = ("code.line.number", "code.lineno")
FUNCTION_KEYS = ("code.function.name", "code.function")
_RULE_TEXT = {
    "latency_p50": "Median latency over its budget",
    "latency_p90": "p90 latency over its budget",
    "latency_p95": "p95 latency over its budget",
    "latency_p99": "p99 latency over its budget",
    "latency_max": "Slowest request over its budget",
    "error_rate": "Error rate over its budget",
    "db_queries": "Too many database queries in one request",
    "repeated_queries": "One statement repeated too often in one request",
    "span_count": "Too many spans in one request",
    "latency_regression": "Slower than the baseline",
    "error_rate_regression": "More errors than the baseline",
    "db_queries_regression": "More database queries than the baseline",
    "repeated_queries_regression": "More repeated statements than the baseline",
    "n_plus_one": "N+1 queries: one statement run once per item",
    "n_plus_one_http": "N+1 calls: one downstream route called once per item",
    "broken_trace": "Trace context lost between services",
    "serial_fanout": "Independent downstream calls made one after another",
    "slow_statement": "One statement dominates its request",
    "sensitive_data": "Sensitive data in span attributes",
}


def _first(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if attrs.get(k) not in (None, ""):
            return attrs[k]
    return None


def _uri(path: str, root: Path) -> tuple[str, str | None]:
    """A path as SARIF wants it: relative to the source root when under it."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix(), "%SRCROOT%"
    try:
        return p.resolve().relative_to(root).as_posix(), "%SRCROOT%"
    except ValueError:
        return p.as_uri(), None


def _location(path: str, line: int | None, function: str | None, root: Path) -> dict[str, Any]:
    uri, base = _uri(path, root)
    artifact: dict[str, Any] = {"uri": uri}
    if base:
        artifact["uriBaseId"] = base
    physical: dict[str, Any] = {"artifactLocation": artifact}
    if line and int(line) >= 1:
        physical["region"] = {"startLine": int(line)}
    loc: dict[str, Any] = {"physicalLocation": physical}
    if function:
        loc["logicalLocations"] = [{"fullyQualifiedName": str(function), "kind": "function"}]
    return loc


def code_location(trace: Mapping[str, Any] | None, start_ids: list[str | None],
                  down_from: str | None = None) -> tuple[str, int | None, str | None] | None:
    """(file, line, function) from the first span with code attributes: each of `start_ids`
    and its ancestors, then the subtree of `down_from` in start order."""
    if not trace:
        return None
    spans = {str(s.get("span_id")): s for s in trace.get("spans") or []}

    def code(s: Mapping[str, Any]) -> tuple[str, int | None, str | None] | None:
        attrs = s.get("attributes") or {}
        path = _first(attrs, FILE_KEYS)
        if not path:
            return None
        line = _first(attrs, LINE_KEYS)
        try:
            line = int(line) if line is not None else None
        except (TypeError, ValueError):
            line = None
        return str(path), line, _first(attrs, FUNCTION_KEYS)

    for sid in start_ids:
        seen: set[str] = set()
        while sid and sid in spans and sid not in seen:
            seen.add(sid)
            found = code(spans[sid])
            if found:
                return found
            sid = str(spans[sid].get("parent_span_id") or "")
    if down_from and down_from in spans:
        children: dict[str, list[Mapping[str, Any]]] = {}
        for s in spans.values():
            children.setdefault(str(s.get("parent_span_id") or ""), []).append(s)
        queue = [spans[down_from]]
        while queue:
            queue.sort(key=lambda s: float(s.get("start_ms") or 0.0))
            s = queue.pop(0)
            found = code(s)
            if found:
                return found
            queue.extend(children.get(str(s.get("span_id")), []))
    return None


def _detector_line(spec: str, detector: str) -> int:
    """The line configuring `detector` in the spec file (its `detectors:` entry), else 1."""
    import re

    try:
        text = Path(spec).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 1
    pattern = re.compile(rf"^\s*{re.escape(detector)}\s*:")
    return next((i for i, line in enumerate(text.splitlines(), 1) if pattern.match(line)), 1)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slo-harness")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0"


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


def to_sarif(report: Mapping[str, Any], root: str | os.PathLike[str] | None = None
             ) -> dict[str, Any]:
    """The SARIF 2.1.0 log of a report dict (`slo.judge.check.run_check`)."""
    root_path = Path(root or os.getcwd()).resolve()
    spec = str(report.get("spec") or "slo.yaml")
    traces = report.get("traces") or {}
    rules: list[dict[str, Any]] = []
    rule_index: dict[str, int] = {}

    def rule(rule_id: str, name: str, level: str) -> int:
        if rule_id not in rule_index:
            rule_index[rule_id] = len(rules)
            rules.append({"id": rule_id, "name": name,
                          "shortDescription": {"text": _RULE_TEXT.get(name, name)},
                          "defaultConfiguration": {"level": level}})
        return rule_index[rule_id]

    results = []
    for r in report.get("results") or []:
        if r.get("status") == "pass":
            continue
        trace = traces.get(r.get("trace_id") or "")
        culprit = (trace or {}).get("culprit_span_id")
        found = code_location(trace, [culprit, r.get("span_id")], r.get("span_id"))
        loc = (_location(*found, root_path) if found else
               _location(spec, r.get("spec_line") or 1, None, root_path))
        rule_id = f"slo/{r['objective']}"
        status = "no data" if r["status"] == "no_data" else "failed"
        results.append({
            "ruleId": rule_id, "ruleIndex": rule(rule_id, r["objective"], "error"),
            "level": "error",
            "message": {"text": f"SLO {r['slo']} {r['objective']} {status}: "
                                f"{r.get('explanation') or ''}".strip()},
            "locations": [loc],
            "partialFingerprints": {"sloObjective/v1": _fingerprint(r["slo"], r["objective"])},
            "properties": {k: r.get(k) for k in ("slo", "objective", "status", "observed",
                                                 "budget", "baseline", "unit", "samples",
                                                 "trace_id")},
        })
    for f in report.get("findings") or []:
        trace = traces.get(f.get("trace_id") or "")
        found = code_location(trace, [f.get("first_span_id"), f.get("span_id")])
        loc = (_location(*found, root_path) if found else
               _location(spec, _detector_line(spec, f["detector"]), None, root_path))
        level = "error" if f.get("fails") else "warning"
        rule_id = f"detector/{f['detector']}"
        results.append({
            "ruleId": rule_id, "ruleIndex": rule(rule_id, f["detector"], level),
            "level": level,
            "message": {"text": str(f.get("message") or f["detector"])},
            "locations": [loc],
            "partialFingerprints": {"sloFinding/v1": _fingerprint(
                f["detector"], f.get("service"), f.get("span"), f.get("statement"))},
            "properties": {k: f.get(k) for k in ("detector", "service", "span", "statement",
                                                 "count", "trace_id")},
        })
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "slo-harness", "version": _version(),
                                "rules": rules}},
            "automationDetails": {"id": f"slo-check/{report.get('run_id') or 'run'}"},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": root_path.as_uri() + "/"}},
            "results": results,
            "properties": {"verdict": report.get("verdict"), "run_id": report.get("run_id"),
                           "baseline_run_id": report.get("baseline_run_id")},
        }],
    }


def write_sarif(report: Mapping[str, Any], report_dir: str | os.PathLike[str]) -> Path:
    """Write `slo-report.sarif` into `report_dir`; returns its path."""
    path = Path(report_dir) / "slo-report.sarif"
    path.write_text(json.dumps(to_sarif(report), indent=1, default=str) + "\n",
                    encoding="utf-8")
    return path
