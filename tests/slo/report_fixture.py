"""Sample report dicts (docs/architecture.md, "Report dict") for the HTML report's tests and bench.

Shaped like what `slo check` produces for the SUT with `missing_index` and `n_plus_one` on:
order-detail's p95 blows its budget because inventory's stock look-up scans the table, and
product-list runs one category query per product. Span data deliberately carries hostile
strings (a span named `<script>`, attribute values with quotes and angle brackets), since
everything from spans is untrusted input.
"""

from __future__ import annotations

import copy
import random
from typing import Any

EVIL_NAME = "<script>alert(1)</script>"
EVIL_ATTR = "\"quoted\" & 'single' </script><img src=x onerror=alert(2)>"
CULPRIT_STATEMENT = "SELECT quantity FROM inventory WHERE product_id = ?"

CAND_TRACE = "c" * 31 + "1"
BASE_TRACE = "b" * 31 + "1"
NPLUS1_TRACE = "c" * 31 + "2"
BROKEN_TRACE = "c" * 31 + "3"


def _span(
    sid: str,
    parent: str,
    service: str,
    name: str,
    start: float,
    dur: float,
    *,
    kind: str = "internal",
    critical: bool = False,
    status: str = "unset",
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "span_id": sid,
        "parent_span_id": parent,
        "service": service,
        "name": name,
        "kind": kind,
        "start_ms": start,
        "duration_ms": dur,
        "status": status,
        "status_message": "",
        "critical": critical,
        "attributes": attributes or {},
    }


def order_trace(trace_id: str, role: str, inventory_ms: float) -> dict[str, Any]:
    """GET /orders/<id>: order-service fans out to four services in parallel."""
    end = max(inventory_ms + 6, 40.0) + 3
    spans = [
        _span(
            "a" * 16,
            "",
            "order-service",
            "GET /orders/<int:order_id>",
            0,
            end,
            kind="server",
            critical=True,
            attributes={
                "http.route": "/orders/<int:order_id>",
                "http.request.method": "GET",
                "http.response.status_code": 200,
            },
        ),
        _span(
            "a" * 15 + "1",
            "a" * 16,
            "order-service",
            "SELECT",
            0.4,
            1.1,
            kind="client",
            attributes={
                "db.system.name": "sqlite",
                "db.query.text": "SELECT * FROM orders WHERE id = ?",
            },
        ),
        _span("a" * 15 + "2", "a" * 16, "order-service", "GET", 2.0, 12.0, kind="client"),
        _span(
            "a" * 15 + "3",
            "a" * 15 + "2",
            "user-service",
            "GET /users/<int:user_id>",
            3.0,
            10.0,
            kind="server",
        ),
        _span("a" * 15 + "4", "a" * 16, "order-service", "GET", 2.0, 20.0, kind="client"),
        _span(
            "a" * 15 + "5",
            "a" * 15 + "4",
            "product-service",
            "GET /products/<int:product_id>",
            3.0,
            18.0,
            kind="server",
        ),
        _span(
            "a" * 15 + "6",
            "a" * 16,
            "order-service",
            "GET",
            2.1,
            inventory_ms + 4,
            kind="client",
            critical=True,
        ),
        _span(
            "a" * 15 + "7",
            "a" * 15 + "6",
            "inventory-service",
            "GET /stock/<int:product_id>",
            3.0,
            inventory_ms + 2,
            kind="server",
            critical=True,
        ),
        _span(
            "a" * 15 + "8",
            "a" * 15 + "7",
            "inventory-service",
            "SELECT",
            3.5,
            inventory_ms,
            kind="client",
            critical=True,
            attributes={
                "db.system.name": "sqlite",
                "db.query.text": CULPRIT_STATEMENT,
                "note": EVIL_ATTR,
            },
        ),
        _span("a" * 15 + "9", "a" * 16, "order-service", "GET", 2.2, 30.0, kind="client"),
        _span(
            "a" * 14 + "10",
            "a" * 15 + "9",
            "promotion-service",
            EVIL_NAME,
            3.0,
            27.0,
            kind="server",
            attributes={"evil": EVIL_ATTR, "<b>key</b>": "v"},
        ),
    ]
    return {
        "trace_id": trace_id,
        "role": role,
        "start_ns": 1_764_000_000_000_000_000,
        "duration_ms": end,
        "culprit_span_id": "a" * 15 + "8" if role == "candidate" else None,
        "spans": spans,
    }


def nplus1_trace(trace_id: str, queries: int = 20) -> dict[str, Any]:
    spans = [
        _span(
            "d" * 16,
            "",
            "product-service",
            "GET /products",
            0,
            4 + queries * 1.5,
            kind="server",
            critical=True,
        ),
    ]
    for i in range(queries):
        spans.append(
            _span(
                f"{i:016x}",
                "d" * 16,
                "product-service",
                "SELECT",
                2 + i * 1.5,
                1.2,
                kind="client",
                critical=True,
                attributes={"db.query.text": "SELECT name FROM categories WHERE id = ?"},
            )
        )
    return {
        "trace_id": trace_id,
        "role": "candidate",
        "start_ns": 1_764_000_001_000_000_000,
        "duration_ms": 4 + queries * 1.5,
        "culprit_span_id": None,
        "spans": spans,
    }


def broken_trace(trace_id: str) -> dict[str, Any]:
    """A trace whose second half lost its parent (broken propagation): two roots."""
    return {
        "trace_id": trace_id,
        "role": "candidate",
        "start_ns": 1_764_000_002_000_000_000,
        "duration_ms": 25.0,
        "culprit_span_id": None,
        "spans": [
            _span(
                "e" * 16, "", "order-service", "GET /orders/<int:order_id>", 0, 25, kind="server"
            ),
            _span(
                "e" * 15 + "1",
                "f" * 16,
                "promotion-service",
                "GET /promotions",
                5,
                15,
                kind="server",
                status="error",
            ),
        ],
    }


def _latencies(seed: int, n: int, median: float, spread: float) -> list[float]:
    rnd = random.Random(seed)
    return sorted(round(rnd.lognormvariate(0, spread) * median, 3) for _ in range(n))


def sample_report() -> dict[str, Any]:
    """A failing report with a baseline, two SLOs, findings and exemplar traces."""
    run = {
        "run_id": "run-cand",
        "start_ns": 1_764_000_000_000_000_000,
        "end_ns": 1_764_000_030_000_000_000,
        "spans": 51234,
        "traces": 2100,
        "services": [
            "order-service",
            "user-service",
            "product-service",
            "inventory-service",
            "promotion-service",
        ],
        "load": {"users": 20, "requests": 2100, "failures": 3, "rps": 70.0},
    }
    base_run = dict(
        run,
        run_id="run-base",
        spans=40211,
        traces=2098,
        load={"users": 20, "requests": 2098, "failures": 0, "rps": 69.9},
    )
    results = [
        {
            "slo": "order-detail",
            "objective": "error_rate",
            "kind": "objective",
            "status": "pass",
            "observed": 0.001,
            "budget": 0.01,
            "baseline": 0.0,
            "unit": "ratio",
            "samples": 1500,
            "explanation": "0.10% of 1500 requests failed; budget 1%.",
            "trace_id": None,
            "baseline_trace_id": None,
            "p_value": None,
            "significant": None,
        },
        {
            "slo": "order-detail",
            "objective": "latency_p95",
            "kind": "objective",
            "status": "fail",
            "observed": 612.5,
            "budget": 400.0,
            "baseline": 48.2,
            "unit": "ms",
            "samples": 1500,
            "explanation": "p95 612 ms is over its 400 ms budget. inventory-service SELECT quantity "
            "FROM inventory WHERE product_id = ? went from 0.3 ms to 560 ms.",
            "trace_id": CAND_TRACE,
            "baseline_trace_id": BASE_TRACE,
            "p_value": None,
            "significant": None,
            "contributions": [
                {
                    "group": "inventory-service " + CULPRIT_STATEMENT,
                    "service": "inventory-service",
                    "span": "SELECT",
                    "statement": CULPRIT_STATEMENT,
                    "baseline_ms": 0.3,
                    "candidate_ms": 560.0,
                    "share": 0.93,
                },
                {
                    "group": "promotion-service " + EVIL_NAME,
                    "service": "promotion-service",
                    "span": EVIL_NAME,
                    "statement": None,
                    "baseline_ms": 20.0,
                    "candidate_ms": 27.0,
                    "share": 0.02,
                },
            ],
        },
        {
            "slo": "order-detail",
            "objective": "latency_regression",
            "kind": "regression",
            "status": "fail",
            "observed": 612.5,
            "budget": 0.2,
            "baseline": 48.2,
            "unit": "ms",
            "samples": 1500,
            "explanation": "p95 is 12.7x the baseline (allowed +20%); Mann-Whitney U p < 0.001.",
            "trace_id": CAND_TRACE,
            "baseline_trace_id": BASE_TRACE,
            "p_value": 1e-12,
            "significant": True,
            "contributions": [],
        },
        {
            "slo": "product-list",
            "objective": "latency_p95",
            "kind": "objective",
            "status": "pass",
            "observed": 35.0,
            "budget": 200.0,
            "baseline": 9.0,
            "unit": "ms",
            "samples": 600,
            "explanation": "p95 35 ms is within 200 ms.",
            "trace_id": NPLUS1_TRACE,
            "baseline_trace_id": None,
        },
        {
            "slo": "product-list",
            "objective": "db_queries",
            "kind": "objective",
            "status": "fail",
            "observed": 21,
            "budget": 8,
            "baseline": 1,
            "unit": "count",
            "samples": 600,
            "explanation": "21 DB queries under one GET /products (budget 8).",
            "trace_id": NPLUS1_TRACE,
            "baseline_trace_id": None,
        },
        {
            "slo": "checkout",
            "objective": "latency_p95",
            "kind": "objective",
            "status": "no_data",
            "observed": None,
            "budget": 300.0,
            "baseline": None,
            "unit": "ms",
            "samples": 0,
            "explanation": 'No span matched service=order-service span="POST /checkout".',
            "trace_id": None,
            "baseline_trace_id": None,
        },
    ]
    findings = [
        {
            "detector": "n_plus_one",
            "service": "product-service",
            "span": "GET /products",
            "statement": "SELECT name FROM categories WHERE id = ?",
            "count": 20,
            "trace_id": NPLUS1_TRACE,
            "span_id": "d" * 16,
            "message": "The same statement ran 20 times in sequence under GET /products.",
            "fails": True,
            "saved_ms": 28.5,
        },
        {
            "detector": "broken_trace",
            "service": "promotion-service",
            "span": "GET /promotions",
            "statement": None,
            "count": 1,
            "trace_id": BROKEN_TRACE,
            "span_id": "e" * 15 + "1",
            "message": "A span's parent is missing: trace context was dropped on a call.",
            "fails": False,
            "saved_ms": None,
        },
        {
            "detector": "slow_statement",
            "service": "inventory-service",
            "span": "SELECT",
            "statement": CULPRIT_STATEMENT,
            "count": 1500,
            "trace_id": CAND_TRACE,
            "span_id": "a" * 15 + "8",
            "message": "Slow statement: " + EVIL_ATTR,
            "fails": False,
            "saved_ms": None,
        },
    ]
    slos = [
        {
            "name": "order-detail",
            "select": {"service": "order-service", "span": "GET /orders/<int:order_id>"},
            "samples": 1500,
            "latency_ms": {
                "candidate": _latencies(1, 1500, 380, 0.5),
                "baseline": _latencies(2, 1500, 30, 0.3),
            },
            "budgets_ms": {"latency_p95": 400.0},
        },
        {
            "name": "product-list",
            "select": {"service": "product-service", "span": "GET /products"},
            "samples": 600,
            "latency_ms": {"candidate": _latencies(3, 600, 25, 0.2), "baseline": None},
            "budgets_ms": {"latency_p95": 200.0},
        },
    ]
    traces = {
        CAND_TRACE: order_trace(CAND_TRACE, "candidate", 560.0),
        BASE_TRACE: order_trace(BASE_TRACE, "baseline", 0.3),
        NPLUS1_TRACE: nplus1_trace(NPLUS1_TRACE),
        BROKEN_TRACE: broken_trace(BROKEN_TRACE),
    }
    return {
        "version": 1,
        "verdict": "fail",
        "run_id": "run-cand",
        "baseline_run_id": "run-base",
        "generated_at": "2026-11-26T03:00:00Z",
        "run": run,
        "baseline_run": base_run,
        "results": results,
        "findings": findings,
        "slos": slos,
        "traces": traces,
    }


def minimal_report() -> dict[str, Any]:
    """Only DESIGN.md's required fields: no run facts, baseline, slos or traces."""
    return {
        "version": 1,
        "verdict": "fail",
        "run_id": "r1",
        "baseline_run_id": None,
        "results": [
            {
                "slo": "order-detail",
                "objective": "latency_p95",
                "status": "fail",
                "observed": 500.0,
                "budget": 400.0,
                "baseline": None,
                "unit": "ms",
                "samples": 10,
                "explanation": "too slow",
                "trace_id": "deadbeef",
            }
        ],
        "findings": [
            {
                "detector": "n_plus_one",
                "service": "s",
                "span": "x",
                "statement": "SELECT 1",
                "count": 6,
                "trace_id": "nope",
            }
        ],
    }


def big_report(n_traces: int = 50, spans_per_trace: int = 300, seed: int = 7) -> dict[str, Any]:
    """A report with `n_traces` failing objectives, each with a `spans_per_trace`-span trace."""
    rnd = random.Random(seed)
    report = sample_report()
    report["results"] = []
    report["traces"] = {}
    services = [f"svc-{i}" for i in range(8)]
    for t in range(n_traces):
        tid = f"{t:032x}"
        spans = [
            _span(
                f"{t:08x}{0:08x}",
                "",
                services[0],
                "GET /root",
                0,
                1000.0,
                kind="server",
                critical=True,
                attributes={"http.route": "/root"},
            )
        ]
        for i in range(1, spans_per_trace):
            parent = spans[rnd.randrange(len(spans))]
            start = parent["start_ms"] + rnd.random() * parent["duration_ms"] * 0.5
            dur = rnd.random() * (parent["start_ms"] + parent["duration_ms"] - start)
            spans.append(
                _span(
                    f"{t:08x}{i:08x}",
                    parent["span_id"],
                    rnd.choice(services),
                    rnd.choice(["SELECT", "GET", "POST /x", "cache.get"]),
                    round(start, 3),
                    round(dur, 3),
                    critical=rnd.random() < 0.1,
                    attributes={"db.query.text": "SELECT * FROM t WHERE id = ?", "i": i},
                )
            )
        report["traces"][tid] = {
            "trace_id": tid,
            "role": "candidate",
            "start_ns": 0,
            "duration_ms": 1000.0,
            "culprit_span_id": spans[-1]["span_id"],
            "spans": spans,
        }
        report["results"].append(
            {
                "slo": f"slo-{t % 5}",
                "objective": f"latency_p{t}",
                "kind": "objective",
                "status": "fail",
                "observed": 1000.0,
                "budget": 400.0,
                "baseline": None,
                "unit": "ms",
                "samples": 100,
                "explanation": "slow",
                "trace_id": tid,
                "baseline_trace_id": None,
            }
        )
    return copy.deepcopy(report)
