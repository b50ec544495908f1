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
