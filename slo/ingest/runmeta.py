"""Run metadata files of the span store (`meta/run=<id>.json`): written by the load generator
and the gate, read by the check. Apart from `slo.ingest.store` because writing one needs no
pyarrow: Locust's plugin writes its run's metadata as it quits, and importing pyarrow and
numpy there was most of Locust's exit, which the gate waits for (issue 12)."""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import orjson

from slo.errors import SourceError


def run_dir_name(run_id: str) -> str:
    """A file-system-safe, reversible-enough directory name for a run id (the column is truth)."""
    q = urllib.parse.quote(run_id, safe="")
    if len(q) > 150:
        q = q[:100] + "~" + hashlib.sha1(run_id.encode()).hexdigest()
    return "run=" + q


def meta_path(store: str | os.PathLike[str], run_id: str) -> Path:
    return Path(store) / "meta" / (run_dir_name(run_id) + ".json")


def write_run_meta(store: str | os.PathLike[str], run_id: str, meta: dict[str, Any]) -> None:
    """Save a run's metadata (start/end times, users, totals) atomically."""
    path = meta_path(store, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(orjson.dumps({"version": 1, "run_id": run_id, "meta": meta}, default=str))
    os.replace(tmp, path)


def read_run_meta(store: str | os.PathLike[str], run_id: str) -> dict[str, Any] | None:
    path = meta_path(store, run_id)
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (orjson.JSONDecodeError, OSError) as e:
        raise SourceError(f"unreadable run metadata {path}: {e}") from None
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise SourceError(f"run metadata {path} has an unknown version")
    result: dict[str, Any] | None = doc.get("meta")
    return result
