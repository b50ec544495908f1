"""Span sources other than the store: OTLP/JSON files and Jaeger's query API.

Both produce the same `slo.ingest.spans.SCHEMA` table as the collector: OTLP/JSON goes through the
collector's own decoder (`slo.ingest.otlp`), Jaeger's internal format is mapped with `make_row`.
Jaeger answers at most a limited number of traces per query, so a window whose answer is
full is split in two and both halves are read again ("paging" by time), until every answer
is complete: a large window is read in full, never silently truncated.
"""

from __future__ import annotations

import datetime as dt
import gzip
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from slo.errors import PayloadError, SourceError
from slo.ingest import otlp
from slo.ingest.spans import SCHEMA, STATUS_ERROR, STATUS_OK, make_row, table_from_rows

JAEGER_PAGE = 500  # traces asked for per query
_MAX_QUERIES = 10_000


# ---------------------------------------------------------------------------- files


def _open_text(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SourceError(f"cannot read trace file {path}: {e.strerror or e}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise SourceError(f"{path}: not a readable gzip file: {e}") from None
    return data


def _documents(path: Path, data: bytes) -> Iterator[tuple[int, Any]]:
    """(line number, parsed request) for one document or one request per line."""
    try:
        yield 1, orjson.loads(data)
        return
    except orjson.JSONDecodeError:
        pass
    for no, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield no, orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise SourceError(
                f"{path}:{no}: not OTLP/JSON ({e}); expected one ExportTraceServiceRequest "
                "document or one per line"
            ) from None


def _select_run(table: pa.Table, run_id: str | None, where: str) -> pa.Table:
    if run_id is None:
        return table
    out = table.filter(pc.equal(table["run_id"], run_id))
    if not out.num_rows:
        known = sorted(set(table["run_id"].to_pylist()))
        raise SourceError(
            f"run {run_id!r} is not in {where} (runs there: "
            f"{', '.join(map(repr, known)) or 'none'})"
        )
    return out


def read_otlp_files(paths: list[str], run_id: str | None = None) -> pa.Table:
    """Spans from OTLP/JSON files (the OpenTelemetry Collector file exporter's format).

    Each file is one ExportTraceServiceRequest document or one per line, optionally gzipped.
    With `run_id`, only that run's spans (SourceError if it has none).
    """
    if not paths:
        raise SourceError("no trace files given")
    tables = []
    for p in paths:
        path = Path(p)
        data = _open_text(path)
        for no, doc in _documents(path, data):
            try:
                tables.append(otlp.decode_json(doc).table)
            except PayloadError as e:
                raise SourceError(f"{path}:{no}: {e}") from None
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    return _select_run(table, run_id, ", ".join(map(str, paths)))


# ---------------------------------------------------------------------------- Jaeger


def _rfc3339(ns: int) -> str:
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


def _get_json(session: Any, url: str, params: dict[str, Any], soft: bool = False
              ) -> tuple[int, Any]:
    """(status, parsed JSON); 404 (and with `soft`, any error status) is returned, not raised."""
    import requests

    try:
        r = session.get(url, params=params, timeout=60)
    except requests.RequestException as e:
        raise SourceError(f"cannot reach Jaeger at {url}: {e}") from None
    if r.status_code == 404 or (soft and r.status_code != 200):
        return r.status_code, None
    if r.status_code != 200:
        raise SourceError(f"Jaeger {url} answered {r.status_code}: {r.text[:200]}")
    body = r.content
    try:
        return 200, orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:  # gRPC-gateway streams: one {"result": ...} object per line
        return 200, {"chunks": [orjson.loads(x) for x in body.splitlines() if x.strip()]}
    except orjson.JSONDecodeError as e:
        raise SourceError(f"Jaeger {url} did not answer JSON: {e}") from None


def _jaeger_id(v: Any, width: int) -> str:
    s = str(v or "").lower()
    return s.rjust(width, "0") if s else ""


def _tags(tags: Iterable[dict[str, Any]] | None) -> dict[str, Any]:
    return {t["key"]: t.get("value") for t in tags or [] if isinstance(t, dict) and "key" in t}


_KIND_TAG = {"server": "server", "client": "client", "producer": "producer",
             "consumer": "consumer", "internal": "internal"}
_DERIVED_TAGS = ("span.kind", "otel.status_code", "otel.status_description",
                 "internal.span.format")


def jaeger_internal_rows(doc: Any) -> list[dict[str, Any]]:
    """Rows from a Jaeger `/api/traces` answer ({"data": [{traceID, spans, processes}]})."""
    rows = []
    for trace in doc.get("data") or []:
        processes = trace.get("processes") or {}
        for s in trace.get("spans") or []:
            proc = processes.get(s.get("processID")) or s.get("process") or {}
            resource = _tags(proc.get("tags"))
            resource.setdefault("service.name", proc.get("serviceName", ""))
            tags = _tags(s.get("tags"))
            trace_id = _jaeger_id(s.get("traceID") or trace.get("traceID"), 32)
            parent = ""
            for ref in s.get("references") or []:
                if _jaeger_id(ref.get("traceID") or trace_id, 32) == trace_id:
                    parent = _jaeger_id(ref.get("spanID"), 16)
                    if ref.get("refType", "CHILD_OF") == "CHILD_OF":
                        break
            if not parent and s.get("parentSpanID"):
                parent = _jaeger_id(s["parentSpanID"], 16)
            if parent.strip("0") == "":
                parent = ""
            status_tag = str(tags.get("otel.status_code", "")).upper()
            if status_tag == "ERROR" or tags.get("error") in (True, "true"):
                status = STATUS_ERROR
            elif status_tag == "OK":
                status = STATUS_OK
            else:
                status = 0
            kind = _KIND_TAG.get(str(tags.get("span.kind", "")).lower(), "internal")
            message = str(tags.get("otel.status_description", ""))
            attributes = {k: v for k, v in tags.items() if k not in _DERIVED_TAGS}
            start_ns = int(s.get("startTime", 0)) * 1000
            events = [
                {"name": str(_tags(log.get("fields")).get("event", "")),
                 "time_ns": int(log.get("timestamp", 0)) * 1000,
                 "attributes": _tags(log.get("fields"))}
                for log in s.get("logs") or []
            ]
            rows.append(make_row(
                trace_id=trace_id, span_id=_jaeger_id(s.get("spanID"), 16),
                name=str(s.get("operationName", "")), start_ns=start_ns,
                end_ns=start_ns + int(s.get("duration", 0)) * 1000,
                attributes=attributes, resource=resource, events=events,
                parent_span_id=parent, kind=kind, status_code=status, status_message=message,
            ))
    return rows


def _v3_table(doc: Any) -> pa.Table:
    chunks = doc["chunks"] if "chunks" in doc else [doc]
    tables = []
    for chunk in chunks:
        if "error" in chunk and "result" not in chunk:
            raise SourceError(f"Jaeger error: {chunk['error']}")
        tables.append(otlp.decode_json(chunk.get("result") or {}).table)
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


class _Jaeger:
    def __init__(self, url: str):
        import requests

        self.base = url.rstrip("/")
        self.session = requests.Session()
        self.api: str | None = None  # "v3" or "internal", found on first query
        self.queries = 0

    def services(self) -> list[str]:
        code, doc = _get_json(self.session, self.base + "/api/v3/services", {}, soft=True)
        if code == 200 and isinstance(doc, dict) and "services" in doc:
            return [str(s) for s in doc.get("services") or []]
        code, doc = _get_json(self.session, self.base + "/api/services", {})
        if code != 200 or not isinstance(doc, dict):
            raise SourceError(f"Jaeger at {self.base} has no services API (is it Jaeger?)")
        return [str(s) for s in doc.get("data") or []]

    def _query(self, service: str, start_ns: int, end_ns: int) -> tuple[pa.Table, int]:
        """(spans, number of traces) for one window, via v3 or the internal API."""
        self.queries += 1
        if self.queries > _MAX_QUERIES:
            raise SourceError("Jaeger window needs too many queries; narrow the time window")
        if self.api in (None, "v3"):
            code, doc = _get_json(self.session, self.base + "/api/v3/traces", {
                "query.service_name": service,
                "query.start_time_min": _rfc3339(start_ns),
                "query.start_time_max": _rfc3339(end_ns),
                "query.num_traces": JAEGER_PAGE,
                "query.search_depth": JAEGER_PAGE,
            }, soft=self.api is None)  # first query: an old Jaeger may refuse v3, fall back
            if code == 200:
                self.api = "v3"
                try:
                    t = _v3_table(doc)
                except (PayloadError, TypeError, AttributeError) as e:
                    raise SourceError(f"Jaeger v3 answer is not OTLP/JSON: {e}") from None
                return t, len(set(t["trace_id"].to_pylist()))
            if self.api == "v3" and code == 404:  # Jaeger v3 answers 404 for "no traces"
                return SCHEMA.empty_table(), 0
            if self.api == "v3":
                raise SourceError(f"Jaeger at {self.base} stopped answering /api/v3/traces")
        code, doc = _get_json(self.session, self.base + "/api/traces", {
            "service": service, "start": start_ns // 1000, "end": -(-end_ns // 1000),
            "limit": JAEGER_PAGE,
        })
        if code != 200:
            raise SourceError(f"Jaeger at {self.base} has neither /api/v3/traces nor /api/traces")
        self.api = "internal"
        try:
            rows = jaeger_internal_rows(doc)
            traces = len(doc.get("data") or [])
        except (TypeError, AttributeError, ValueError, KeyError) as e:
            raise SourceError(f"Jaeger /api/traces answer has an unexpected shape: {e}") from None
        return table_from_rows(rows), traces

    def window(self, service: str, start_ns: int, end_ns: int) -> list[pa.Table]:
        """Every span of `service` in the window, splitting windows whose answer is full."""
        out: list[pa.Table] = []
        stack = [(start_ns, end_ns)]
        while stack:
            lo, hi = stack.pop()
            table, traces = self._query(service, lo, hi)
            if traces >= JAEGER_PAGE and hi - lo > 1000:
                mid = (lo + hi) // 2
                stack += [(mid + 1, hi), (lo, mid)]
                continue
            out.append(table)
        return out


def read_jaeger(
    url: str,
    services: list[str] | None,
    start_ns: int,
    end_ns: int,
    *,
    run_id: str | None = None,
) -> pa.Table:
    """Spans of the services (None: every service Jaeger knows) that started in the window.

    Uses `/api/v3/traces` (OTLP/JSON) when the server has it, else `/api/traces`.
    With `run_id`, only spans of that run (SourceError if it has none).
    """
    if end_ns <= start_ns:
        raise SourceError("Jaeger time window is empty: end must be after start")
    j = _Jaeger(url)
    names = services or j.services()
    if not names:
        raise SourceError(f"Jaeger at {url} knows no services")
    tables = [t for s in names for t in j.window(s, start_ns, end_ns)]
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    if table.num_rows:  # a trace spanning services comes back once per service: dedupe
        idx = table.group_by(["trace_id", "span_id"], use_threads=False).aggregate(
            [("start_ns", "count")]
        )
        if idx.num_rows != table.num_rows:
            keys = [f"{a}{b}" for a, b in zip(table["trace_id"].to_pylist(),
                                              table["span_id"].to_pylist(), strict=True)]
            seen: set[str] = set()
            mask = []
            for k in keys:
                mask.append(k not in seen)
                seen.add(k)
            table = table.filter(pa.array(mask))
    return _select_run(table, run_id, f"Jaeger at {url}")
