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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from slo.ingest.kinds import KIND_NAMES as KIND_NAMES  # re-exported
from slo.ingest.kinds import KINDS as KINDS

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


# Semantic-convention attribute names, as (stable, old) where OTel renamed one: a span may
# carry either or both (`OTEL_SEMCONV_STABILITY_OPT_IN`), and the stable name wins. Every
# module that reads an attribute by name takes the names from here, so which names mean
# the same thing, and which of them wins, is decided once.
DB_SYSTEM_ATTRS = ("db.system.name", "db.system")
DB_STATEMENT_ATTRS = ("db.query.text", "db.statement")
HTTP_ROUTE_ATTRS = ("http.route",)
HTTP_STATUS_ATTRS = ("http.response.status_code", "http.status_code")
HTTP_METHOD_ATTRS = ("http.request.method", "http.method")
URL_PATH_ATTRS = ("url.path", "http.target")
URL_FULL_ATTRS = ("url.full", "http.url")
#: The port a client span called, and the port a server span listened on (before the URL's).
CLIENT_PORT_ATTRS = ("server.port", "net.peer.port")
SERVER_PORT_ATTRS = ("server.port", "net.host.port")
#: A server span's `Host` header (`host:port`), old conventions only.
HTTP_HOST_ATTRS = ("http.host",)

#: Every attribute that feeds a promoted column: what a compact (baseline) trace keeps.
PROMOTED_ATTRS = (*DB_STATEMENT_ATTRS, *DB_SYSTEM_ATTRS, *HTTP_ROUTE_ATTRS, *HTTP_STATUS_ATTRS)

#: Old and stable OTel semantic-convention names that mean the same thing, both ways round
#: (for matching the attributes a spec names against whichever a span carries).
SYNONYMS = {
    old: stable
    for stable, old in (
        HTTP_METHOD_ATTRS, HTTP_STATUS_ATTRS, DB_STATEMENT_ATTRS, DB_SYSTEM_ATTRS, URL_PATH_ATTRS
    )
}
SYNONYMS.update({v: k for k, v in list(SYNONYMS.items())})


def promoted_lists(
    spans_attributes: Sequence[Mapping[str, Any]],
) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """The values promoted into `db_system`, `db_statement`, `http_route` and
    `http_status_code`, for many spans at once (four lists), as the spans carry them: the
    stable name wins over the old one; "" (None for the status) when absent.

    The one place that knows which attributes feed the columns. One call per batch with no
    Python call per span, so the OTLP decoder's hot loop stays fast; values are not
    coerced here (the decoder converts whole columns, `promoted` one span's values).
    """
    systems: list[Any] = []
    statements: list[Any] = []
    routes: list[Any] = []
    codes: list[Any] = []
    system, old_system = DB_SYSTEM_ATTRS
    stmt, old_stmt = DB_STATEMENT_ATTRS
    (route,) = HTTP_ROUTE_ATTRS
    status, old_status = HTTP_STATUS_ATTRS
    for a in spans_attributes:
        g = a.get
        systems.append(g(system) or g(old_system) or "")
        statements.append(g(stmt) or g(old_stmt) or "")
        routes.append(g(route) or "")
        code = g(status)
        codes.append(g(old_status) if code is None else code)
    return systems, statements, routes, codes


def http_status(value: Any) -> int:
    """An HTTP status attribute as the int32 column holds it (0 if absent or unusable)."""
    if value is None:
        return 0
    try:
        value = int(value)
    except (TypeError, ValueError, OverflowError):
        return 0
    return value if -(1 << 31) <= value < (1 << 31) else 0


def statement(attributes: Mapping[str, Any]) -> str:
    """A span's DB statement (stable name first), "" if it has none."""
    return str(promoted_lists([attributes])[1][0])


def promoted(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The promoted columns for one span's attributes (stable names win over old ones)."""
    (system,), (stmt,), (route,), (status,) = promoted_lists([attributes])
    return {
        "db_system": str(system),
        "db_statement": str(stmt),
        "http_route": str(route),
        "http_status_code": http_status(status),
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
