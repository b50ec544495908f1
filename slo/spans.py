"""The span table: the one shape every source produces and every consumer reads.

The collector, the OTLP file reader and the Jaeger reader all turn spans into rows of
`SCHEMA`; the store keeps them as Parquet with exactly these columns, and `slo check`
reads a `pyarrow.Table` of them. Semantic-convention attributes that the checker needs
on every span (DB system and statement, HTTP route and status) are promoted into columns
at ingest, accepting both the old and the stable OTel names, so checks never parse JSON
in their hot path. Everything else stays in the JSON `attributes`/`resource` columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

#: OTLP SpanKind numbers to the names used in the table and in specs.
KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
KIND_NAMES = set(KINDS.values())

#: OTLP status codes: 0 unset, 1 ok, 2 error.
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2

RUN_ID_ATTR = "slo.run_id"
#: A span's W3C `tracestate` (OTLP `trace_state`), kept as an attribute when not empty.
TRACESTATE_ATTR = "slo.tracestate"

SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),  # slo.run_id, or the collector's --run-id; "" if none
        ("trace_id", pa.string()),  # 32 lowercase hex
        ("span_id", pa.string()),  # 16 lowercase hex
        ("parent_span_id", pa.string()),  # 16 lowercase hex, "" for a root span
        ("service", pa.string()),  # resource service.name
        ("name", pa.string()),
        ("kind", pa.string()),  # one of KIND_NAMES
        ("start_ns", pa.int64()),  # unix epoch nanoseconds
        ("end_ns", pa.int64()),
        ("status_code", pa.int8()),  # STATUS_*
        ("status_message", pa.string()),
        ("db_system", pa.string()),  # db.system.name or db.system, "" if not a DB span
        ("db_statement", pa.string()),  # db.query.text or db.statement, ""
        ("http_route", pa.string()),  # http.route, ""
        ("http_status_code", pa.int32()),  # http.response.status_code or http.status_code, 0
        ("attributes", pa.string()),  # JSON object of all span attributes
        ("resource", pa.string()),  # JSON object of all resource attributes
        ("events", pa.string()),  # JSON list of {"name", "time_ns", "attributes"}
    ]
)
COLUMNS = SCHEMA.names

_DEFAULTS: dict[str, Any] = {
    "run_id": "",
    "parent_span_id": "",
    "service": "",
    "kind": "internal",
    "status_code": 0,
    "status_message": "",
    "db_system": "",
    "db_statement": "",
    "http_route": "",
    "http_status_code": 0,
    "attributes": "{}",
    "resource": "{}",
    "events": "[]",
}


def promoted(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The promoted columns for a span's attributes (stable names win over old ones)."""
    status = attributes.get("http.response.status_code", attributes.get("http.status_code", 0))
    try:
        status = int(status or 0)
    except (TypeError, ValueError):
        status = 0
    return {
        "db_system": str(attributes.get("db.system.name") or attributes.get("db.system") or ""),
        "db_statement": str(
            attributes.get("db.query.text") or attributes.get("db.statement") or ""
        ),
        "http_route": str(attributes.get("http.route") or ""),
        "http_status_code": status,
    }


def make_row(
    *,
    trace_id: str,
    span_id: str,
    name: str,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, Any] | None = None,
    resource: Mapping[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
    **columns: Any,
) -> dict[str, Any]:
    """One table row from plain values: fills defaults, promotes attributes, encodes JSON.

    `service` defaults to the resource's `service.name`, `run_id` to the span's or the
    resource's `slo.run_id` attribute.
    """
    attributes = dict(attributes or {})
    resource = dict(resource or {})
    row = dict(_DEFAULTS)
    row.update(promoted(attributes))
    row["service"] = str(resource.get("service.name", ""))
    row["run_id"] = str(attributes.get(RUN_ID_ATTR) or resource.get(RUN_ID_ATTR) or "")
    row.update(columns)
    row.update(
        trace_id=trace_id.lower(),
        span_id=span_id.lower(),
        parent_span_id=(row["parent_span_id"] or "").lower(),
        name=name,
        start_ns=int(start_ns),
        end_ns=int(end_ns),
        attributes=json.dumps(attributes, separators=(",", ":"), default=str),
        resource=json.dumps(resource, separators=(",", ":"), default=str),
        events=json.dumps(events or [], separators=(",", ":"), default=str),
    )
    return row


def table_from_rows(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """A span table from rows made by `make_row` (or any mapping with every column)."""
    rows = list(rows)
    return pa.Table.from_pydict(
        {c: [r[c] for r in rows] for c in COLUMNS}, schema=SCHEMA
    )


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()
