"""The check's typed results: one objective or regression verdict, one detector finding,
one trace the report shows, each written to the report's JSON here and nowhere else.

The field names are the `slo-report.json` contract (docs/architecture.md, DESIGN.md
"slo-report.json"): the reports, the pytest plugin, SARIF and the HTML page read them. What
the check needs while it works on a result (the exemplar's row, whether to attribute its
latency, the baseline summary it was compared with, whether to explain its worst trace) are
typed fields too, but they are not written: the JSON only carries what a reader can use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: A result's optional fields, written only when set (in this order, after the rest).
_OPTIONAL = ("stat", "pattern", "affected_share", "span_id", "comparisons")


def num(v: Any) -> float | None:
    """A JSON number of a statistic: NaN and infinities become null, floats 6 decimals."""
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else (round(v, 6) if math.isfinite(v) else None)


@dataclass
class Result:
    """One verdict: an objective of an SLO against its budget, or a regression against the
    baseline. `observed` and `budget` are stored as `num` makes them."""

    slo: str
    objective: str
    kind: str  # "objective" | "regression"
    status: str  # "pass" | "fail" | "no_data"
    observed: float | None
    budget: float | None
    unit: str  # "ms" | "ratio" | "count"
    samples: int
    explanation: str
    spec_line: int | None  # where SARIF points when no span names its code
    baseline: float | None = None
    trace_id: str | None = None  # the exemplar's trace, and its selected span
    span_id: str | None = None
    baseline_trace_id: str | None = None
    p_value: float | None = None
    significant: bool | None = None
    contributions: list[dict[str, Any]] = field(default_factory=list)
    change: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    method: str | None = None
    stat: str | None = None  # the statistic a regression reports (p50, p90, mean, max)
    pattern: str | None = None  # latency regressions: "shift" | "tail" ...
    affected_share: float | None = None  # ... and the share of requests slowed down
    comparisons: list[dict[str, Any]] | None = None  # slice pairs: every statistic's test
    # -- working state of the check, never written --
    exemplar_row: int | None = field(default=None, repr=False)
    attribute: bool = field(default=False, repr=False)  # attribute the latency to spans
    base: dict[str, Any] | None = field(default=None, repr=False)  # baseline SLO summary
    explain_worst: bool = field(default=False, repr=False)  # say where the worst trace spent

    def __post_init__(self) -> None:
        self.observed = num(self.observed)
        self.budget = num(self.budget)

    @property
    def fails(self) -> bool:
        return self.status != "pass"

    def as_dict(self) -> dict[str, Any]:
        """The result as `slo-report.json` has it."""
        out: dict[str, Any] = {
            "slo": self.slo, "objective": self.objective, "kind": self.kind,
            "status": self.status, "observed": self.observed, "budget": self.budget,
            "baseline": self.baseline, "unit": self.unit, "samples": self.samples,
            "explanation": self.explanation, "trace_id": self.trace_id,
            "baseline_trace_id": self.baseline_trace_id, "p_value": self.p_value,
            "significant": self.significant, "contributions": self.contributions,
            "change": self.change, "ci_low": self.ci_low, "ci_high": self.ci_high,
            "confidence": self.confidence, "method": self.method, "spec_line": self.spec_line,
        }
        for key in _OPTIONAL:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass
class Finding:
    """One detector finding (`slo.judge.detectors.run_detectors`): what is wrong, whether it
    fails the check, and its evidence (service, span, statement, count, exemplar trace ids,
    and whatever else the detector measured), in the detector's order."""

    detector: str
    message: str
    fails: bool
    evidence: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_detector(cls, found: dict[str, Any]) -> Finding:
        evidence = {k: v for k, v in found.items() if k not in ("detector", "message", "fails")}
        return cls(str(found["detector"]), str(found["message"]), bool(found["fails"]),
                   evidence)

    def trace_ids(self) -> set[str]:
        """The traces it names: its exemplar, and the other half of a split trace."""
        return {v for k, v in self.evidence.items()
                if k.endswith("trace_id") and isinstance(v, str) and v}

    def as_dict(self) -> dict[str, Any]:
        """The finding as `slo-report.json` has it."""
        return {"detector": self.detector, **self.evidence, "message": self.message,
                "fails": self.fails}


@dataclass
class TraceView:
    """One trace the report carries (an exemplar, a finding's evidence, a baseline's
    representative): `slo.judge.traces.trace_dict`'s shape, the `traces` entry of
    docs/architecture.md, so the HTML page and the terminal render without the store."""

    trace_id: str
    role: str  # "candidate" | "baseline"
    start_ns: int
    duration_ms: float
    culprit_span_id: str | None
    spans: list[dict[str, Any]]
    truncated: int | None = None  # spans left out beyond MAX_SPANS
    extra: dict[str, Any] = field(default_factory=dict)  # other keys, kept as they came

    _KEYS = ("trace_id", "role", "start_ns", "duration_ms", "culprit_span_id", "spans",
             "truncated")

    @classmethod
    def from_dict(cls, d: dict[str, Any], role: str | None = None) -> TraceView:
        """From a trace dict (fresh, or read back from a baseline); `role` overrides."""
        return cls(d["trace_id"], role or d["role"], d["start_ns"], d["duration_ms"],
                   d.get("culprit_span_id"), d["spans"], d.get("truncated"),
                   {k: v for k, v in d.items() if k not in cls._KEYS})

    def as_dict(self) -> dict[str, Any]:
        """The trace as `slo-report.json` has it."""
        out: dict[str, Any] = {"trace_id": self.trace_id, "role": self.role,
                               "start_ns": self.start_ns, "duration_ms": self.duration_ms,
                               "culprit_span_id": self.culprit_span_id, "spans": self.spans}
        if self.truncated is not None:
            out["truncated"] = self.truncated
        out.update(self.extra)
        return out
