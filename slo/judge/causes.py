"""The causes a result's explanation names, in words a person can act on: why a selector
matched nothing, which errors a run had, which statements ran (more often than before).

Shared by the objectives and both kinds of regression, so the same cause reads the same
whichever verdict found it.
"""

from __future__ import annotations

import difflib
from collections import Counter
from typing import Any

import numpy as np

from slo.judge import sqlnorm
from slo.judge.summary import SloEval
from slo.judge.tree import RunIndex


def no_data(ix: RunIndex, ev: SloEval, run_id: str | None) -> str:
    """Why an SLO's selector matched nothing, and the nearest things the run did have."""
    sel = ev.slo.select
    what = ", ".join(f"{k}={v!r}" for k, v in sel.as_dict().items())
    msg = f"No span matched select ({what}) in run {run_id or '(all spans)'}"
    if ix.n == 0:
        return msg + ": the run has no spans at all."
    names: list[str] = []
    if sel.service is not None:
        mask = ix.match("service", lambda v: v == sel.service)
        if not mask.any():
            services = [s for s in ix.codes("service")[1] if s]
            return msg + f": no spans from service {sel.service!r} (services seen: " \
                         f"{', '.join(sorted(services)[:10])})."
        codes, values = ix.codes("name")
        names = sorted({values[c] for c in np.unique(codes[mask])})
    if names and sel.span is not None:
        close = difflib.get_close_matches(sel.span, names, n=3, cutoff=0.5)
        shown = close or names[:5]
        return msg + f"; span names of that service include: " \
                     f"{', '.join(repr(n) for n in shown)}."
    return msg + "."


def error_sources(ix: RunIndex, err_rows: np.ndarray) -> str:
    """The most common error messages (or HTTP statuses) among the failed requests."""
    msgs: Counter[str] = Counter()
    for r in ix.rows(err_rows[:500], ["status_message", "http_status_code"]):
        m = r["status_message"] or (f"HTTP {r['http_status_code']}"
                                    if r["http_status_code"] else "error status")
        msgs[m] += 1
    top = ", ".join(f"{m!r} x{n}" for m, n in msgs.most_common(3))
    return f"Most common: {top}."


def top_statements(ev: SloEval) -> str:
    """The statements an SLO's requests run most often."""
    items = sorted(ev.counts.per_statement.items(), key=lambda kv: -kv[1]["mean"])[:3]
    parts = [f"{i['service']} `{sqlnorm.short(s)}` {i['mean']:.1f} per request (max "
             f"{i['max']})" for s, i in items]
    return ("Statements: " + "; ".join(parts) + ".") if parts else ""


def statement_changes(ev: SloEval, base: dict[str, Any]) -> str:
    """The statements that now run more often per request than in the baseline."""
    # by grouping key: each run labels a group with its own spelling (`select` or `SELECT`)
    before = {sqlnorm.key(k): v for k, v in (base.get("statements") or {}).items()}
    rows = []
    for stmt, c in ev.counts.per_statement.items():
        b = before.get(sqlnorm.key(stmt), {"mean": 0.0, "max": 0})
        if c["mean"] > b["mean"] + 0.05 or c["max"] > b["max"]:
            rows.append((c["mean"] - b["mean"], c["max"] - b["max"], stmt, b, c))
    if not rows:
        return "No single statement runs more often; the added queries are spread out."
    rows.sort(key=lambda r: (-r[0], -r[1], r[2]))
    parts = []
    for _, _, stmt, b, c in rows[:3]:
        parts.append(f"{c.get('service', '')} `{sqlnorm.short(stmt)}` now runs "
                     f"{c['mean']:.2f} times per request, max {c['max']} (baseline "
                     f"{b['mean']:.2f}, max {b['max']})")
    return "; ".join(parts) + "."
