"""Saved baselines: a compact, versioned summary of one run, enough to judge the next.

Not the raw spans (a CI cache or a git repository should hold a baseline): per SLO the
latency distribution (at most a few thousand order statistics plus exact mean/std/n), the
per-request count distributions, error counts, per-statement frequencies, a critical-path
time profile per span group (for explaining a regression), and a couple of representative
traces (for the HTML report's side-by-side waterfall).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from slo.errors import BaselineError
from slo.judge.spec import Spec
from slo.judge.stats import prefetch_scipy
from slo.judge.summary import summarize_run

VERSION = 1
KIND = "slo-baseline"


def build_baseline(spec: Spec, spans: pa.Table, run_meta: dict[str, Any] | None = None, *,
                   run_id: str | None = None, slices: Any = None, source: Any = None
                   ) -> dict[str, Any]:
    """The baseline of one run under `spec`: {"version": 1, "kind": "slo-baseline", ...}.

    `slices`: one label per span (the gate's slice run ids); the baseline then keeps each
    SLO's values per slice, for the slice-pair comparison with the interleaved candidate.
    `source`: as in `slo.check.run_check`, for a table of `CORE_COLUMNS`.
    """
    body = summarize_run(spec, spans, run_id or (run_meta or {}).get("run_id"), run_meta,
                         slices=slices, source=source)
    return {"version": VERSION, "kind": KIND,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "spec": spec.path, **body}


def save_baseline(baseline: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write atomically (a half-written baseline must never be read back); `.gz` compresses."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    from slo.jsonsafe import strict_json

    data = json.dumps(strict_json(baseline), separators=(",", ":"), allow_nan=False).encode()
    if p.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    fd, tmp = tempfile.mkstemp(prefix=p.name + ".", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def load_baseline(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a baseline; `BaselineError` (one line) when missing, corrupt or of another version."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise BaselineError(f"{p}: baseline file not found; record one with "
                            "`slo check --save-baseline PATH`") from None
    except OSError as e:
        raise BaselineError(f"{p}: cannot read the baseline: {e.strerror or e}") from None
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        doc = json.loads(raw)
    except (OSError, EOFError, ValueError) as e:
        raise BaselineError(f"{p}: not a baseline (corrupt JSON: {str(e).splitlines()[0]}); "
                            "re-record it with --save-baseline") from None
    if not isinstance(doc, dict) or doc.get("kind", KIND) != KIND or "slos" not in doc:
        raise BaselineError(f"{p}: not an SLO baseline (no 'slos'); record one with "
                            "--save-baseline")
    if doc.get("version") != VERSION:
        raise BaselineError(f"{p}: unsupported baseline version {doc.get('version')!r} "
                            f"(this slo reads version {VERSION}); re-record it")
    if not isinstance(doc["slos"], dict) or not all(isinstance(v, dict)
                                                    for v in doc["slos"].values()):
        raise BaselineError(f"{p}: malformed baseline ('slos' must map names to summaries)")
    prefetch_scipy()  # the comparison that follows needs it: import it while spans are read
    return doc
