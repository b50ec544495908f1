"""JSON that strict parsers accept: reports and baselines are read by other tools."""

from __future__ import annotations

import math
from typing import Any


def strict_json(value: Any) -> Any:
    """NaN and infinities (not JSON) become null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value
