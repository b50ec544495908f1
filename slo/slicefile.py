"""The file through which `slo gate` tells Locust's users the current slice.

One small file, replaced atomically at each slice boundary and polled by every Locust
process: the bare run id (the SUT target, one host), or `{"run_id": ..., "host": ...}` when
the two sides are two deployments and the slice's requests go to that side's base URL. An
empty run id means "between slices". Plain Python: the gate writes it, the plugin reads it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def slice_text(run_id: str, host: str = "") -> str:
    """What the gate writes (the inverse of `parse_slice`)."""
    return json.dumps({"run_id": run_id, "host": host}) if host else run_id


def parse_slice(text: str) -> tuple[str, str]:
    """(run id, host) from the slice file's text; host '' means Locust's own --host."""
    text = text.strip()
    if not text.startswith("{"):
        return text, ""
    try:
        doc = json.loads(text)
    except ValueError:
        return "", ""  # cannot be torn (atomic rename); unreadable means no run
    return str(doc.get("run_id") or ""), str(doc.get("host") or "").rstrip("/")


def write_slice(path: Path, run_id: str, host: str = "") -> None:
    """Replace the file atomically: a poller reads the old or the new slice, never half."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(slice_text(run_id, host))
    os.replace(tmp, path)
