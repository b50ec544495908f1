"""OTLP trace requests (protobuf or JSON, maybe gzipped) -> span tables of `slo.ingest.spans.SCHEMA`.

One decoder serves the collector (HTTP and gRPC), the OTLP file reader and Jaeger's
OTLP-based v3 API, so every source agrees on ids, kinds, run ids and promoted columns.

Why it is hand-written rather than `json_format` + `make_row` per span: the collector must
store 100k spans/s. Protobuf is parsed by the upb runtime into wire-compatible "lazy"
messages whose attributes stay raw bytes, so each distinct KeyValue is decoded once and then
served from a cache; columns are gathered as plain lists and turned into Arrow arrays in one
go (ids hexed in bulk, timestamps clamped column-wise); attribute JSON is written by orjson.
OTLP/JSON is walked directly (protobuf's JSON parser would read hex ids as base64 without
complaint). A hypothesis test checks that both paths give identical tables.

Rules (OTLP specification): a malformed request is rejected whole (`PayloadError`, HTTP
400); a span with unusable ids is dropped and counted in `Decoded.rejected` (HTTP 200 with
`partial_success`). Timestamps are clamped into int64 (the wire type is unsigned).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from slo.errors import PayloadError
from slo.ingest.spans import (
    COLUMNS,
    KINDS,
    RUN_ID_ATTR,
    SCHEMA,
    TRACESTATE_ATTR,
    http_status,
    promoted,
    promoted_lists,
)

DEFAULT_MAX_BODY = 20 * 1024 * 1024
INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)
# Arrays and kvlists nested in one attribute value: deeper, the span is refused (partial
# success), the same in protobuf and JSON. (protobuf's own parser stops near 32.)
MAX_VALUE_DEPTH = 16
_TOO_DEEP = f"attribute values nested deeper than {MAX_VALUE_DEPTH} levels (or malformed)"


class _TooDeep(Exception):
    """An AnyValue nested deeper than MAX_VALUE_DEPTH (not a ValueError: that is the
    whole request's fault, this one span's)."""

_ZERO_TRACE = b"\0" * 16
_ZERO_SPAN = b"\0" * 8
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_KIND_BY_NAME = {f"SPAN_KIND_{v.upper()}": k for k, v in KINDS.items()}
_STATUS_BY_NAME = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class PayloadTooLarge(PayloadError):
    """The request body (after decompression) is over the size limit (HTTP 413)."""


@dataclass
class Decoded:
    """A decoded request: the spans kept, and how many were refused and why."""

    table: pa.Table
    rejected: int = 0
    message: str = ""

    @property
    def spans(self) -> int:
        return self.table.num_rows


# ---------------------------------------------------------------------------- bodies


def decompress(body: bytes, encoding: str | None, limit: int = DEFAULT_MAX_BODY) -> bytes:
    """The body without its Content-Encoding, never inflating more than `limit` bytes.

    A gzip bomb stops at the limit with `PayloadTooLarge` instead of filling memory.
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        return body
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise PayloadError(f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
    wbits = 47  # 32 + 15: gzip or zlib header, detected
    out = []
    size = 0
    data = body
    try:
        while data:
            d = zlib.decompressobj(wbits)
            while True:
                chunk = d.decompress(data, limit + 1 - size)
                size += len(chunk)
                out.append(chunk)
                if size > limit:
                    raise PayloadTooLarge(
                        f"request body is larger than {limit} bytes after decompression"
                    )
                if d.eof or not d.unconsumed_tail:
                    break
                data = d.unconsumed_tail
            if not d.eof:
                raise PayloadError("truncated gzip body")
            data = d.unused_data  # concatenated gzip members
    except zlib.error as e:
        raise PayloadError(f"bad gzip body: {e}") from None
    return b"".join(out)


def is_json(content_type: str | None) -> bool:
    return "json" in (content_type or "").lower()


def decode(body: bytes, content_type: str | None, run_id: str = "") -> Decoded:
    """Decode a (decompressed) ExportTraceServiceRequest in the encoding `content_type` says."""
    if is_json(content_type):
        return decode_json(body, run_id)
    return decode_protobuf(body, run_id)


# ---------------------------------------------------------------------------- columns


class _Columns:
    """Column lists for one table; `table()` turns them into Arrow arrays in bulk."""

    __slots__ = tuple(COLUMNS)

    def __init__(self) -> None:
        for c in COLUMNS:
            setattr(self, c, [])

    def table(self) -> pa.Table:
        arrays = []
        for field in SCHEMA:
            values = getattr(self, field.name)
            arrays.append(pa.array(values, type=field.type))
        return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # ints beyond 64 bits and other oddities
        import json

        return json.dumps(value, separators=(",", ":"), default=str)


def _double(d: float) -> float | str:
    """JSON has no NaN or infinities: spell them as OTLP/JSON does."""
    if math.isfinite(d):
        return d
    return "NaN" if math.isnan(d) else ("Infinity" if d > 0 else "-Infinity")


def _clamp(ns: int) -> int:
    return ns if 0 <= ns <= INT64_MAX else (INT64_MAX if ns > 0 else 0)


def _add_span(
    c: _Columns,
    run_id: str,
    trace_id: str,
    span_id: str,
    parent: str,
    service: str,
    name: str,
    kind: str,
    start: int,
    end: int,
    status_code: int,
    status_message: str,
    attrs: dict[str, Any],
    resource_json: str,
    events_json: str,
) -> None:
    c.run_id.append(str(attrs.get(RUN_ID_ATTR) or run_id))
    c.trace_id.append(trace_id)
    c.span_id.append(span_id)
    c.parent_span_id.append(parent)
    c.service.append(service)
    c.name.append(name)
    c.kind.append(kind)
    c.start_ns.append(_clamp(start))
    c.end_ns.append(_clamp(end))
    c.status_code.append(status_code if 0 <= status_code <= 2 else 0)
    c.status_message.append(status_message)
    p = promoted(attrs)
    c.db_system.append(p["db_system"])
    c.db_statement.append(p["db_statement"])
    c.http_route.append(p["http_route"])
    c.http_status_code.append(p["http_status_code"])
    c.attributes.append(_dumps(attrs) if attrs else "{}")
    c.resource.append(resource_json)
    c.events.append(events_json)


# ---------------------------------------------------------------------------- protobuf


def _pb_value(v: Any, depth: int = 0) -> Any:
    k = v.WhichOneof("value")
    if k == "string_value":
        return v.string_value
    if k == "int_value":
        return v.int_value
    if k == "bool_value":
        return v.bool_value
    if k == "double_value":
        return _double(v.double_value)
    if k == "array_value" or k == "kvlist_value":
        if depth >= MAX_VALUE_DEPTH:
            raise _TooDeep()
        if k == "array_value":
            return [_pb_value(x, depth + 1) for x in v.array_value.values]
        return {kv.key: _pb_value(kv.value, depth + 1) for kv in v.kvlist_value.values}
    if k == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return None


def _pb_attrs(kvs: Any) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        v = kv.value
        k = v.WhichOneof("value")
        if k == "string_value":
            out[kv.key] = v.string_value
        elif k == "int_value":
            out[kv.key] = v.int_value
        else:
            out[kv.key] = _pb_value(v)
    return out


def parse_request(body: bytes) -> trace_service_pb2.ExportTraceServiceRequest:
    req = trace_service_pb2.ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except (DecodeError, RecursionError, ValueError) as e:
        raise PayloadError(f"malformed protobuf ExportTraceServiceRequest: {e}") from None
    return req


def _lazy_classes() -> dict[str, Any]:
    """Message classes wire-compatible with ExportTraceServiceRequest, but with span
    attributes, events and resources left as raw bytes.

    Why: building a Python wrapper for every KeyValue and AnyValue is most of the decode
    cost, yet most attributes (method, db.system, port, run id...) repeat from span to span.
    With raw bytes, each distinct KeyValue is decoded once and then found in a cache.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FileDescriptorProto(name="slo_lazy_otlp.proto", package="slo.lazy",
                                           syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto
    rep, opt = T.LABEL_REPEATED, T.LABEL_OPTIONAL

    def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        m = f.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = type_name

    message("Status", [("message", 2, T.TYPE_STRING, opt, ""),
                       ("code", 3, T.TYPE_INT32, opt, "")])
    message("Span", [
        ("trace_id", 1, T.TYPE_BYTES, opt, ""), ("span_id", 2, T.TYPE_BYTES, opt, ""),
        ("trace_state", 3, T.TYPE_STRING, opt, ""),
        ("parent_span_id", 4, T.TYPE_BYTES, opt, ""), ("name", 5, T.TYPE_STRING, opt, ""),
        ("kind", 6, T.TYPE_INT32, opt, ""),
        ("start_time_unix_nano", 7, T.TYPE_FIXED64, opt, ""),
        ("end_time_unix_nano", 8, T.TYPE_FIXED64, opt, ""),
        ("attributes", 9, T.TYPE_BYTES, rep, ""), ("events", 11, T.TYPE_BYTES, rep, ""),
        ("status", 15, T.TYPE_MESSAGE, opt, ".slo.lazy.Status")])
    message("ScopeSpans", [("spans", 2, T.TYPE_MESSAGE, rep, ".slo.lazy.Span")])
    message("ResourceSpans", [("resource", 1, T.TYPE_BYTES, opt, ""),
                              ("scope_spans", 2, T.TYPE_MESSAGE, rep, ".slo.lazy.ScopeSpans")])
    message("Request", [("resource_spans", 1, T.TYPE_MESSAGE, rep, ".slo.lazy.ResourceSpans")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return {m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(
        f"slo.lazy.{m.name}")) for m in f.message_type}


_LAZY = _lazy_classes()
_KV_CACHE: dict[bytes, tuple[str, Any]] = {}
_KV_CACHE_MAX = 50_000  # entries; with the size cap below, a few MB at most
_KV_CACHE_BYTES = 160  # longer KeyValues (statements, URLs) are mostly unique: not cached


def _kv(raw: bytes) -> tuple[str, Any]:
    """(key, plain value) of one serialized KeyValue, cached (callers catch DecodeError)."""
    kv = common_pb2.KeyValue.FromString(raw)
    item = (kv.key, _pb_value(kv.value))
    if len(raw) <= _KV_CACHE_BYTES:
        if len(_KV_CACHE) >= _KV_CACHE_MAX:
            _KV_CACHE.clear()
        _KV_CACHE[raw] = item
    return item


def _events_json(raw_events: Any) -> str:
    out = []
    for raw in raw_events:
        e = trace_pb2.Span.Event.FromString(raw)
        out.append({"name": e.name, "time_ns": _clamp(e.time_unix_nano),
                    "attributes": _pb_attrs(e.attributes)})
    return _dumps(out)


def decode_protobuf(body: bytes, run_id: str = "") -> Decoded:
    """Decode protobuf bytes of an ExportTraceServiceRequest."""
    req = _LAZY["Request"]()
    try:
        req.ParseFromString(body)
        return _decode_lazy(req, run_id)
    except (DecodeError, RecursionError, ValueError) as e:
        raise PayloadError(f"malformed protobuf ExportTraceServiceRequest: {e}") from None
    except _TooDeep:
        raise PayloadError(f"resource {_TOO_DEEP}") from None


def decode_message(req: Any, run_id: str = "") -> Decoded:
    """Decode a parsed ExportTraceServiceRequest message."""
    return decode_protobuf(req.SerializeToString(), run_id)


def _hex_array(ids: list[bytes], width: int = 0) -> pa.Array:
    """Lowercase hex strings for many ids at once (one hexlify, no per-id Python string).

    `width`: every id has this many bytes (trace and span ids), else lengths vary (parents).
    """
    data = binascii.hexlify(b"".join(ids))
    if width:
        offsets = np.arange(0, 2 * width * (len(ids) + 1), 2 * width, dtype=np.int32)
    else:
        lengths = np.fromiter(map(len, ids), dtype=np.int32, count=len(ids))
        offsets = np.zeros(len(ids) + 1, dtype=np.int32)
        np.cumsum(lengths * 2, out=offsets[1:])
    return pa.StringArray.from_buffers(len(ids), pa.py_buffer(offsets), pa.py_buffer(data))


def _str_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([v if isinstance(v, str) else str(v) for v in values], type=pa.string())


def _ns_array(values: list[int]) -> pa.Array:
    if max(values) > INT64_MAX:  # fixed64 on the wire; clamp rather than wrap
        values = [min(v, INT64_MAX) for v in values]
    return pa.array(values, type=pa.int64())


def _enum_array(values: list[int], top: int, type_: pa.DataType) -> pa.Array:
    """Enum numbers, anything outside 0..top (open enums) as 0."""
    if min(values) < 0 or max(values) > top:
        values = [v if 0 <= v <= top else 0 for v in values]
    return pa.array(values, type=type_)


def _http_array(values: list[Any]) -> pa.Array:
    try:
        return pc.fill_null(pa.array(values, type=pa.int32()), 0)
    except (pa.ArrowTypeError, pa.ArrowInvalid, OverflowError, TypeError, ValueError):
        return pa.array([http_status(v) for v in values], pa.int32())


_KIND_NAMES = pa.array([KINDS[i] for i in range(len(KINDS))], type=pa.string())


def _decode_lazy(req: Any, run_id: str) -> Decoded:
    """The hot loop only gathers raw values into lists; ids become hex, timestamps are
    clamped and kinds named column-wise afterwards."""
    tids: list[bytes] = []
    sids: list[bytes] = []
    pids: list[bytes] = []
    runs: list[str] = []
    services: list[str] = []
    names: list[str] = []
    kinds: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    codes: list[int] = []
    messages: list[str] = []
    attributes: list[str] = []
    resources: list[str] = []
    events: list[str] = []
    rejected = 0
    reasons: set[str] = set()
    dumps = orjson.dumps
    cache = _KV_CACHE
    kv_decode = _kv
    promote_from: list[dict[str, Any]] = []  # promoted columns are read per batch, below
    keep = promote_from.append
    no_attrs: dict[str, Any] = {}
    run_attr = RUN_ID_ATTR
    for rs in req.resource_spans:
        res = _pb_attrs(resource_pb2.Resource.FromString(rs.resource).attributes)
        res_json = _dumps(res) if res else "{}"
        service = str(res.get("service.name", ""))
        res_run = str(res.get(RUN_ID_ATTR) or run_id or "")
        for ss in rs.scope_spans:
            for sp in ss.spans:
                tid = sp.trace_id
                sid = sp.span_id
                pid = sp.parent_span_id
                if len(tid) != 16 or len(sid) != 8 or tid == _ZERO_TRACE or sid == _ZERO_SPAN:
                    rejected += 1
                    reasons.add("trace_id must be 16 bytes and span_id 8 bytes, not all zero")
                    continue
                if pid:
                    if len(pid) != 8:
                        rejected += 1
                        reasons.add("parent_span_id must be empty or 8 bytes")
                        continue
                    if pid == _ZERO_SPAN:
                        pid = b""
                attrs = {}
                try:
                    for raw in sp.attributes:
                        item = cache.get(raw)
                        if item is None:
                            item = kv_decode(raw)
                        attrs[item[0]] = item[1]
                    if sp.trace_state:  # W3C tracestate: how the trace was sampled, if it says
                        attrs[TRACESTATE_ATTR] = sp.trace_state
                    events.append(_events_json(sp.events) if sp.events else "[]")
                except (_TooDeep, DecodeError):  # (the parser's own depth limit: DecodeError)
                    rejected += 1
                    reasons.add(_TOO_DEEP)
                    continue
                tids.append(tid)
                sids.append(sid)
                pids.append(pid)
                services.append(service)
                names.append(sp.name)
                kinds.append(sp.kind)
                starts.append(sp.start_time_unix_nano)
                ends.append(sp.end_time_unix_nano)
                st = sp.status
                codes.append(st.code)
                messages.append(st.message)
                resources.append(res_json)
                if attrs:
                    runs.append(attrs.get(run_attr) or res_run)
                    keep(attrs)
                    try:
                        attributes.append(dumps(attrs).decode())
                    except TypeError:
                        attributes.append(_dumps(attrs))
                else:
                    runs.append(res_run)
                    keep(no_attrs)
                    attributes.append("{}")
    n = len(tids)
    if not n:
        return Decoded(SCHEMA.empty_table(), rejected, "; ".join(sorted(reasons)))
    db_sys, db_stmt, routes, http_codes = promoted_lists(promote_from)
    arrays = {
        "run_id": _str_array(runs),
        "trace_id": _hex_array(tids, 16),
        "span_id": _hex_array(sids, 8),
        "parent_span_id": _hex_array(pids),
        "service": pa.array(services, type=pa.string()),
        "name": pa.array(names, type=pa.string()),
        "kind": _KIND_NAMES.take(_enum_array(kinds, 5, pa.int32())),
        "start_ns": _ns_array(starts),
        "end_ns": _ns_array(ends),
        "status_code": _enum_array(codes, 2, pa.int8()),
        "status_message": pa.array(messages, type=pa.string()),
        "db_system": _str_array(db_sys),
        "db_statement": _str_array(db_stmt),
        "http_route": _str_array(routes),
        "http_status_code": _http_array(http_codes),
        "attributes": pa.array(attributes, type=pa.string()),
        "resource": pa.array(resources, type=pa.string()),
        "events": pa.array(events, type=pa.string()),
    }
    table = pa.Table.from_arrays([arrays[c] for c in COLUMNS], schema=SCHEMA)
    return Decoded(table, rejected, "; ".join(sorted(reasons)))


# ---------------------------------------------------------------------------- JSON


def _get(d: dict[str, Any], camel: str, snake: str, default: Any = None) -> Any:
    v = d.get(camel)
    if v is None:
        v = d.get(snake, default)
    return default if v is None else v


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise TypeError("boolean where an integer was expected")
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("non-finite number where an integer was expected")
        return int(v)
    return int(v)  # int or decimal string; ValueError otherwise


def _json_value(v: Any, depth: int = 0) -> Any:
    if not isinstance(v, dict):
        raise TypeError("AnyValue must be an object")
    if "stringValue" in v or "string_value" in v:
        s = _get(v, "stringValue", "string_value", "")
        if not isinstance(s, str):
            raise TypeError("stringValue must be a string")
        return s
    if "intValue" in v or "int_value" in v:
        i = _int(_get(v, "intValue", "int_value", 0))
        if not INT64_MIN <= i <= INT64_MAX:
            raise ValueError(f"intValue {i} is outside the int64 range")
        return i
    if "boolValue" in v or "bool_value" in v:
        return bool(_get(v, "boolValue", "bool_value", False))
    if "doubleValue" in v or "double_value" in v:
        d = _get(v, "doubleValue", "double_value", 0.0)
        return _double(float(d))  # numbers, or "NaN", "Infinity", "-Infinity"
    if "arrayValue" in v or "array_value" in v:
        if depth >= MAX_VALUE_DEPTH:
            raise _TooDeep()
        values = _get(v, "arrayValue", "array_value", {}).get("values") or []
        return [_json_value(x, depth + 1) for x in values]
    if "kvlistValue" in v or "kvlist_value" in v:
        if depth >= MAX_VALUE_DEPTH:
            raise _TooDeep()
        return _json_attrs(_get(v, "kvlistValue", "kvlist_value", {}).get("values") or [],
                           depth + 1)
    if "bytesValue" in v or "bytes_value" in v:
        b = _get(v, "bytesValue", "bytes_value", "")
        if not isinstance(b, str):
            raise TypeError("bytesValue must be a base64 string")
        return b
    return None


def _json_attrs(kvs: Any, depth: int = 0) -> dict[str, Any]:
    if not isinstance(kvs, list):
        raise TypeError("attributes must be a list")
    out = {}
    for kv in kvs:
        key = kv.get("key", "")
        if not isinstance(key, str):
            raise TypeError("attribute key must be a string")
        out[key] = _json_value(kv.get("value") or {}, depth)
    return out


def _json_id(v: Any, nbytes: int) -> str | None:
    """Lowercase hex id (all-zero included), or None if unusable. Hex in either case;
    base64 (what protobuf's own JSON printer writes) is tolerated."""
    if not isinstance(v, str):
        return None
    s = v.lower()
    if len(s) == 2 * nbytes and (_HEX32 if nbytes == 16 else _HEX16).fullmatch(s):
        return s
    if len(v) == 4 * math.ceil(nbytes / 3):
        try:
            raw = base64.b64decode(v, validate=True)
        except ValueError:
            return None
        if len(raw) == nbytes:
            return raw.hex()
    return None


def _nonzero(hex_id: str | None) -> str | None:
    return hex_id if hex_id and hex_id.strip("0") else None


def _enum(v: Any, names: dict[str, int]) -> int:
    if isinstance(v, str) and not v.lstrip("-").isdigit():
        return names.get(v, 0)
    return _int(v)


def decode_json(body: bytes | str | dict[str, Any], run_id: str = "") -> Decoded:
    """Decode an OTLP/JSON ExportTraceServiceRequest (bytes, text or an already parsed dict)."""
    try:
        doc = body if isinstance(body, dict) else orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise PayloadError(f"malformed JSON: {e}") from None
    try:
        return _decode_json_doc(doc, run_id)
    except PayloadError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError, OverflowError) as e:
        raise PayloadError(f"malformed OTLP/JSON request: {type(e).__name__}: {e}") from None
    except _TooDeep:
        raise PayloadError(f"resource {_TOO_DEEP}") from None


def _decode_json_doc(doc: Any, run_id: str) -> Decoded:
    if not isinstance(doc, dict):
        raise PayloadError("OTLP/JSON request must be an object")
    c = _Columns()
    rejected = 0
    reasons: set[str] = set()
    for rs in _get(doc, "resourceSpans", "resource_spans", []):
        res = _json_attrs(_get(rs.get("resource") or {}, "attributes", "attributes", []))
        res_json = _dumps(res) if res else "{}"
        service = str(res.get("service.name", ""))
        res_run = str(res.get(RUN_ID_ATTR) or run_id or "")
        scopes = _get(rs, "scopeSpans", "scope_spans", None)
        if scopes is None:  # OTLP < 0.19
            scopes = _get(rs, "instrumentationLibrarySpans", "instrumentation_library_spans", [])
        for ss in scopes:
            for sp in ss.get("spans") or []:
                tid = _nonzero(_json_id(_get(sp, "traceId", "trace_id", ""), 16))
                sid = _nonzero(_json_id(_get(sp, "spanId", "span_id", ""), 8))
                praw = _get(sp, "parentSpanId", "parent_span_id", "")
                pid = "" if praw == "" else _json_id(praw, 8)
                if pid and not pid.strip("0"):
                    pid = ""
                if tid is None:
                    rejected += 1
                    reasons.add("traceId must be 32 hex digits, not all zero")
                    continue
                if sid is None:
                    rejected += 1
                    reasons.add("spanId must be 16 hex digits, not all zero")
                    continue
                if pid is None:
                    rejected += 1
                    reasons.add("parentSpanId must be empty or 16 hex digits")
                    continue
                events = _get(sp, "events", "events", [])
                try:
                    attrs = _json_attrs(sp.get("attributes") or [])
                    events_json = _dumps([
                        {"name": str(e.get("name", "")),
                         "time_ns": _clamp(_int(_get(e, "timeUnixNano", "time_unix_nano", 0))),
                         "attributes": _json_attrs(e.get("attributes") or [])}
                        for e in events]) if events else "[]"
                except _TooDeep:
                    rejected += 1
                    reasons.add(_TOO_DEEP)
                    continue
                status = sp.get("status") or {}
                name = sp.get("name", "")
                message = status.get("message", "")
                if not isinstance(name, str) or not isinstance(message, str):
                    raise TypeError("name and status.message must be strings")
                _add_span(
                    c,
                    res_run,
                    tid,
                    sid,
                    pid,
                    service,
                    name,
                    KINDS.get(_enum(sp.get("kind", 0), _KIND_BY_NAME), "unspecified"),
                    _int(_get(sp, "startTimeUnixNano", "start_time_unix_nano", 0)),
                    _int(_get(sp, "endTimeUnixNano", "end_time_unix_nano", 0)),
                    _enum(status.get("code", 0), _STATUS_BY_NAME),
                    message,
                    _with_tracestate(attrs, _get(sp, "traceState", "trace_state", "")),
                    res_json,
                    events_json,
                )
    return Decoded(c.table(), rejected, "; ".join(sorted(reasons)))


def _with_tracestate(attrs: dict[str, Any], state: Any) -> dict[str, Any]:
    if state and isinstance(state, str):
        attrs[TRACESTATE_ATTR] = state
    return attrs


# ---------------------------------------------------------------------------- answers


def success_body(rejected: int, message: str, as_json: bool) -> bytes:
    """ExportTraceServiceResponse, with partial_success when spans were refused."""
    if as_json:
        if not rejected:
            return b"{}"
        return orjson.dumps(
            {"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": message}}
        )
    resp = trace_service_pb2.ExportTraceServiceResponse()
    if rejected:
        resp.partial_success.rejected_spans = rejected
        resp.partial_success.error_message = message
    return resp.SerializeToString()


def error_body(grpc_code: int, message: str, as_json: bool) -> bytes:
    """A google.rpc.Status, as OTLP/HTTP wants for 4xx/5xx answers."""
    if as_json:
        return orjson.dumps({"code": grpc_code, "message": message})
    return status_pb2.Status(code=grpc_code, message=message).SerializeToString()
