"""Every number a person reads, formatted by one set of rules.

The same value must read the same in the terminal, Markdown, JUnit, HTML and the Locust tab:
a reviewer who sees "+1 pts" in the PR comment and "+1.00%" in the HTML report stops trusting
both. So every output format calls these functions, and nothing else formats durations,
shares or changes.

Rules: durations adapt their precision to their size (0.042 ms, 3.21 ms, 41.2 ms, 412 ms,
12.3 s); shares are percentages (1.50%, 12.5%); changes are signed percentages with thousands
separators (+4.2%, +883%, +1,100%); a missing or non-finite value is "-".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

MISSING = "-"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def duration_ms(value: Any) -> str:
    """A duration given in milliseconds: `0.042 ms`, `3.21 ms`, `41.2 ms`, `412 ms`, `12.3 s`."""
    v = _finite(value)
    if v is None:
        return MISSING
    a = abs(v)
    if a >= 10_000:
        return f"{v / 1000:.1f} s"
    if a >= 100:
        return f"{v:.0f} ms"
    if a >= 10:
        return f"{v:.1f} ms"
    if a >= 1:
        return f"{v:.2f} ms"
    if a == 0:
        return "0 ms"
    return f"{v:.2g} ms"


def share(value: Any) -> str:
    """A share (0.015) as a percentage: `1.50%`, `12.5%`, `100%`."""
    v = _finite(value)
    if v is None:
        return MISSING
    pct = v * 100
    if pct == 0:
        return "0%"
    if abs(pct) >= 99.995 and abs(pct) < 1000:
        return f"{pct:.0f}%" if pct == round(pct) else f"{pct:.1f}%"
    return f"{pct:.2f}%" if abs(pct) < 10 else f"{pct:.1f}%"


def count(value: Any) -> str:
    """A count or a mean count: `12`, `2.5`, `1,204`."""
    v = _finite(value)
    if v is None:
        return MISSING
    if v == int(v):
        return f"{int(v):,}"
    return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def value(v: Any, unit: str | None) -> str:
    """A result's observed/budget/baseline value in its unit (`ms`, `ratio`, `count`)."""
    if unit == "ms":
        return duration_ms(v)
    if unit == "ratio":
        return share(v)
    return count(v)


def change(rel: Any) -> str:
    """A relative change (0.2 = 20% more): `+4.2%`, `-12%`, `+883%`, `+1,100%`."""
    v = _finite(rel)
    if v is None:
        return MISSING
    pct = v * 100
    if abs(pct) < 10:
        return f"{pct:+.1f}%"
    return f"{pct:+,.0f}%"


def points(delta: Any) -> str:
    """A difference of two shares, in percentage points: `+1 pt`, `+0.5 pts`."""
    v = _finite(delta)
    if v is None:
        return MISSING
    pp = v * 100
    text = f"{pp:+.2g}" if abs(pp) < 10 else f"{pp:+.0f}"
    return f"{text} pt" if abs(pp) == 1 else f"{text} pts"


def interval(rel: Any, low: Any, high: Any, confidence: Any = None) -> str:
    """A change with its confidence interval: `+883% [+610%, +1,100%], 99%`."""
    text = f"{change(rel)} [{change(low)}, {change(high)}]"
    c = _finite(confidence)
    if c is not None:
        text += f", {c * 100:g}%"
    return text


def budget(result: Mapping[str, Any]) -> str:
    """A result's budget: a level for objectives; for regressions, the allowed increase.

    Latency regressions are relative (`+20% vs baseline`), error rates absolute percentage
    points (`+1 pt`), counts absolute (`+0`).
    """
    b, unit = result.get("budget"), result.get("unit")
    if result.get("kind") != "regression":
        return value(b, unit)
    if _finite(b) is None:
        return MISSING
    if str(result.get("objective", "")).startswith("latency"):
        return f"+{float(b) * 100:g}% vs baseline"
    if unit == "ratio":
        return points(b)
    return f"+{count(b)}"


def tick_ms(ms: float) -> str:
    """Axis labels on a 1-2-5 log scale: `0.5 ms`, `20 ms`, `1 s`."""
    if ms >= 1000:
        return f"{ms / 1000:g} s"
    return f"{ms:g} ms"


def confidence(c: Any) -> str:
    """A confidence level without false precision: `99%`, `99.9%`, `99.98%`."""
    v = _finite(c)
    if v is None:
        return "?"
    for digits in range(0, 4):
        text = f"{v * 100:.{digits}f}"
        if float(text) < 100:
            return (text.rstrip("0").rstrip(".") if "." in text else text) + "%"
    return ">99.99%"


def result_change(x: Mapping[str, Any], unit: str) -> str:
    """A regression's change with its interval, in its unit: `p90 +883% [+610%, +1,100%], 99%`
    (latency, relative), `+0.52 pts [+0.10 pts, +0.94 pts], 99%` (error rate, absolute
    percentage points), `+1.00 [+0.98, +1.02], 99%` (counts per request, absolute).

    `x` carries stat, change, ci_low, ci_high, confidence (a regression result or one of its
    comparisons); without an interval (a request-level comparison) only the change."""
    if x.get("change") is None:
        return ""
    head = ""
    if unit == "ms":
        f, head = change, f"{x.get('stat') or ''} ".lstrip()
    elif unit == "ratio":
        f = points
    else:
        def f(v: Any) -> str:
            d = _finite(v)
            return MISSING if d is None else f"{d:+.2f}"
    if x.get("ci_low") is None:
        return f"{head}{f(x['change'])}"
    return (f"{head}{f(x['change'])} [{f(x['ci_low'])}, {f(x['ci_high'])}], "
            f"{confidence(x.get('confidence'))}")
