"""Trace anti-pattern detectors: what is wrong with a run, whatever the spec says.

Objectives catch a request that got slow; detectors name the well-known mistakes behind it,
each with its evidence and an exemplar trace: N+1 queries, broken traces, serial fan-out,
a statement that dominates its request, and sensitive data in span attributes. Which of them
fail the check is configuration (`fail`), defaults in `DEFAULTS`.

Every detector is one or two DuckDB queries over the run as integers (`slo.judge.spanframe`:
rows as ids, each parent resolved by the check's index, scanned by DuckDB in place), never
joined on id strings; Python only sees the aggregated findings (and, for sensitive data, the
few rows a regular expression pre-selected). Findings are aggregated per detector + service +
span + statement, with counts across traces and the worst trace as the exemplar, never one
per trace.

Thresholds are scaled for a test system on one machine (SQLite queries of ~0.1 ms, calls of
a few ms), not for production web traffic; Sentry's published rules are the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from slo import units
from slo.errors import SloError
from slo.ingest import marks
from slo.ingest.spans import (
    CLIENT_PORT_ATTRS,
    HTTP_HOST_ATTRS,
    HTTP_METHOD_ATTRS,
    HTTP_ROUTE_ATTRS,
    SERVER_PORT_ATTRS,
    URL_FULL_ATTRS,
)
from slo.judge import sqlnorm
from slo.judge.spanframe import SpanFrame, span_frame
from slo.judge.tree import RunIndex, take_rows

DEFAULTS: dict[str, dict[str, object]] = {
    # Sentry: the same statement, sequential, under one parent, >= 5 times, >= 50 ms total.
    # The total-time floor is scaled to SQLite on one box, where a query takes 25-100 us.
    "n_plus_one": {"fail": True, "min_count": 5, "min_total_ms": 0.1},
    # Broken traces are only reported when they are more than edge effects of the run:
    # traces still in flight at its start or end lose their parents legitimately.
    "broken_trace": {
        "fail": True,
        "min_traces": 3,
        "min_share": 0.005,
        "edge_ms": 1000.0,
        "skew_ms": 2.0,
        "entry_orphans": False,
    },
    # Sentry's consecutive HTTP: >= 3 calls, each >= 500 ms, <= 500 ms apart, >= 2 s saved;
    # scaled to a test SUT whose calls take a few milliseconds.
    "serial_fanout": {
        "fail": True,
        "min_calls": 3,
        "min_services": 3,
        "min_call_ms": 1.0,
        "max_gap_ms": 5.0,
        "min_saved_ms": 5.0,
        # a busy machine serializes a thread pool now and then: a code path that calls one
        # after another does it in most requests, so a few traces are noise, not a finding
        "min_traces": 3,
        "min_share": 0.2,
    },
    # Sentry's "N+1 API call", sequential flavour: the same downstream route called one
    # after another under one parent, >= 5 times (the N+1 query rule's count), scaled floor.
    "n_plus_one_http": {"fail": True, "min_count": 5, "min_total_ms": 1.0},
    "slow_statement": {"fail": False, "min_share": 0.5, "min_ms": 5.0, "min_traces": 3},
    "sensitive_data": {"fail": False, "max_rows": 20000},
}

_NS = 1_000_000  # ns per ms


def _options(config: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """DEFAULTS overlaid with `config`, options the spec has already validated.

    `slo.judge.spec` is the one place detector options are checked (with file and line); a name
    unknown here is a caller that skipped it, a programming error.
    """
    out = {name: dict(opts) for name, opts in DEFAULTS.items()}
    for name, opts in (config or {}).items():
        unknown = [name] if name not in DEFAULTS else [k for k in opts if k not in DEFAULTS[name]]
        if unknown:
            raise ValueError(f"detector options {unknown} are not in slo.judge.detectors.DEFAULTS; "
                             "options come from slo.judge.spec.parse_spec, which validates them")
        out[name].update(opts)
    return out


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> tuple[Any, ...]:
    """The one row of an aggregate query (DuckDB's `fetchone` is typed as maybe-None)."""
    rows = con.execute(sql, params or []).fetchall()  # fetchone leaves the result open
    assert rows, sql
    return tuple(rows[0])


_EMPTY = "''"  # the SQL empty string, a default for `_attr`


def _attr(a: str, names: Sequence[str], default: str | None = None) -> str:
    """SQL for the first of the attributes `names` that the JSON column `a` holds, else
    `default` (SQL) or NULL. The names come from `slo.ingest.spans`, stable name first, so a
    detector reads old and new semantic conventions the way ingest promotes them."""
    parts = [f"""json_extract_string({a}, '$."{n}"')""" for n in names]
    if default is not None:
        parts.append(default)
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


def _ms(ns: float | int | None) -> float:
    return round(float(ns or 0) / _NS, 3)


class _Context:
    """One DuckDB connection over a run, plus shared relations built once.

    `m` is the run as integers (`slo.judge.spanframe.SpanFrame`): every id a row number, each
    parent resolved already by the check's index. Joining and partitioning on one integer
    instead of two strings is what keeps a million spans well under a second. `spans` (every
    span with its attributes JSON) is read where a detector must search the attributes;
    strings and attributes of the few rows a finding shows come by row (`strings`, `rows`).
    """

    def __init__(self, spans: pa.Table, sql: str | None = None, con: Any = None,
                 frame: SpanFrame | None = None, files: Sequence[Any] | None = None):
        from slo.ingest.runsource import connect

        # a cursor of `con` is a connection of its own (temp tables, registrations) in the
        # same database: one memory limit and one thread pool for the check and the detectors
        self.con = con.cursor() if con is not None else connect(spans=spans.num_rows)
        if frame is None:
            core = spans
            names = [c for c in _NEEDED if c != "attributes"]
            if any(c not in spans.column_names for c in names):
                # only the row count was given: the columns come from the files
                core = self.con.sql(f"SELECT {', '.join(names)} FROM ({sql})").to_arrow_table()
            frame = span_frame(RunIndex(core))
        self.frame = frame
        self.ix = frame.ix
        self.con.register("m", frame.table)
        # each trace id by its code (`m.tid`), for the few rows found by their strings
        self.con.register("slo_traces", pa.table({
            "tid": pa.array(np.arange(len(frame.trace_ids)), pa.int32()),
            "trace_id": frame.trace_ids}))
        # The attributes: from the table when it holds them, else from the spans' Parquet
        # files (`slo.ingest.runsource.RunSource.sql`).
        self.own_attributes = "attributes" in self.ix.table.column_names
        if self.own_attributes:
            self.con.register("slo_spans_in", self.ix.table)
        else:
            if sql is None:
                raise SloError("span table lacks column(s) attributes "
                               "(see slo.ingest.spans.SCHEMA)")
            self.con.execute(f"CREATE TEMP VIEW slo_spans_in AS {sql}")
        # Nulls where the schema allows them would silently change joins and filters.
        text = ", ".join(
            f"coalesce({c}, '') AS {c}"
            for c in ("trace_id", "span_id", "parent_span_id", "service", "name", "kind")
        )
        self.con.execute(
            f"""CREATE TEMP VIEW spans AS
                SELECT {text}, coalesce(start_ns, 0) AS start_ns,
                       coalesce(end_ns, start_ns, 0) AS end_ns,
                       coalesce(attributes, '{{}}') AS attributes
                FROM slo_spans_in"""
        )
        self._db = False
        self.norms: list[str] = []
        self.files = files

    def attributes_match(self, pattern: str) -> bool:
        """Whether the RE2 `pattern` matches in the attributes of any span, searched a
        segment at a time (`slo.ingest.marks.search`), or known from the files' records of
        what they hold (`slo.ingest.marks`). True when the spans' files are not known."""
        if self.own_attributes:
            return any(marks.search(c, pattern) for c in self.ix.column("attributes").chunks)
        if self.files is None:
            return True
        from slo.ingest.store import READERS

        # a file per thread (10M spans without records: the search's wall 5.5 -> about 3 s)
        return marks.any_file_matches(self.files, pattern, READERS)

    def attributes_absent(self, patterns: Sequence[str]) -> bool:
        """True when the files' records say no span's attributes hold any of `patterns`."""
        return (not self.own_attributes and self.files is not None
                and marks.absent(self.files, patterns))

    def traces(self) -> int:
        return self.ix.n_traces

    def db(self) -> str:
        """Table `db`: DB spans as integers: keys, times, `nid` (normalized statement id
        into `self.norms`) and `g`, one number per parent and statement.

        Statements are normalized in Python once per distinct raw text."""
        if not self._db:
            raws = self.frame.statements
            nids: dict[str, int] = {}
            nid_of = np.full(len(raws) + 1, -1, np.int32)  # the last: no statement
            shown = sqlnorm.shown(raw for raw in raws if raw)  # keyword case does not split one
            for code, raw in enumerate(raws):
                if raw:
                    nid_of[code] = nids.setdefault(shown[raw], len(nids))
            self.norms = list(nids)
            self.con.register("db", self.frame.statement_spans(nid_of))
            self._db = True
        return "db"

    def strings(self, ids: Sequence[int | None]) -> dict[int, dict[str, str]]:
        """trace_id, span_id, parent_span_id and name of the spans of these rows (ids past
        the last row, missing parents, have none)."""
        rows = np.array(sorted({int(i) for i in ids if i is not None and 0 <= i < self.ix.n}),
                        np.int64)
        if not len(rows):
            return {}
        cols = {c: self.ix.take(c, rows).to_pylist()
                for c in ("trace_id", "span_id", "parent_span_id", "name")}
        return {int(r): {c: v[k] or "" for c, v in cols.items()}
                for k, r in enumerate(rows.tolist())}

    def rows(self, ids: np.ndarray | Sequence[int]) -> pa.Table:
        """The spans of these rows, in this order: `m`'s columns (names as strings) and
        their trace_id, span_id and attributes JSON ("{}" where none)."""
        rows = np.asarray(ids, np.int64)
        f = self.frame.table
        cols: dict[str, Any] = {c: take_rows(f.column(c), rows) for c in (
            "tid", "id", "pid", "is_db", "sh", "k", "start_ns", "end_ns")}  # (times: no nulls)
        for c in ("service", "name", "kind", "trace_id", "span_id", "parent_span_id"):
            cols[c] = pc.fill_null(self.ix.take(c, rows), "")
        cols["attributes"] = self._attributes(rows, cols["trace_id"], cols["span_id"])
        return pa.table(cols)

    def _attributes(self, rows: np.ndarray, trace_ids: pa.Array, span_ids: pa.Array
                    ) -> pa.Array:
        if self.own_attributes:
            return pc.fill_null(self.ix.take("attributes", rows), "{}")
        from slo.ingest.runsource import attributes_of

        return attributes_of(self.con, "spans", trace_ids, span_ids)

    def register_rows(self, name: str, ids: np.ndarray | Sequence[int]) -> str:
        """`rows(ids)` as a temp table `name` (kept for the connection's life)."""
        t = self.rows(ids)
        self.con.register("slo_rows_in", t)
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM slo_rows_in")
        finally:
            self.con.unregister("slo_rows_in")
        return name


# --------------------------------------------------------------------------- N+1 queries


def _repeats(source: str, extra: str) -> str:
    """SQL CTEs `lists`, `occ` and `hit` over spans of `source` (columns g, id, tid, pid,
    service, start_ns, end_ns) grouped by `g` (one parent and one statement or route): the
    spans of each group in start order, how many of them ran one after another (`seq`: each
    starts after every earlier one has ended), and the groups with at least $1 of those and
    at least $2 ns in all, with their parent's name."""
    # One list of (start, tie key, id, end) per group, sorted once: three ordered `list(... ORDER BY)`
    # aggregates sorted each group three times (10M spans: 3.0 s CPU, this way 1.1 s).
    return f"""sorted AS (
            SELECT g, any_value(pid) AS pid, any_value(tid) AS tid,
                   any_value(service) AS service, {extra}, count(*) AS total,
                   sum(end_ns - start_ns) AS total_ns,
                   list_sort(list(struct_pack(s := start_ns, k := k, i := id, e := end_ns))) AS l
            FROM {source} GROUP BY g HAVING count(*) >= $1
        ), lists AS (
            SELECT * EXCLUDE (l), l[1].i AS first_id, list_transform(l, lambda x: x.s) AS s,
                   list_transform(l, lambda x: x.e) AS e, list_transform(l, lambda x: x.i) AS ids
            FROM sorted
        ), occ AS (
            -- sequential steps: spans that start after every earlier one has ended
            SELECT * EXCLUDE (s, e),
                   1 + len(list_filter(range(2, len(s) + 1),
                                       lambda i: s[i] >= list_max(e[1:i - 1]))) AS seq
            FROM lists
        ), hit AS (
            SELECT o.*, coalesce(p.name, '') AS parent_name
            FROM occ o LEFT JOIN m p ON p.id = o.pid
            WHERE o.seq >= $1 AND o.total_ns >= $2
        )"""


def _repeat_groups(ctx: _Context, o: dict[str, Any], ctes: str, key: str
                   ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Run `ctes` (ending in `_repeats`' `hit`) and aggregate its groups by service, parent
    name and `key` across traces, the longest run as exemplar: (row, the finding's shared
    fields) per aggregate."""
    rows = _rows(
        ctx.con,
        f"""{ctes}
        SELECT service, parent_name, {key}, count(*) AS occurrences,
               count(DISTINCT tid) AS traces, median(seq) AS p50, median(total_ns) AS p50_ns,
               arg_max(struct_pack(pid, first_id, seq, total_ns, ids), (seq, total_ns, tid)) AS x
        FROM hit GROUP BY service, parent_name, {key}
        ORDER BY traces DESC, service, parent_name, {key}
        """,
        [o["min_count"], int(o["min_total_ms"] * _NS)],
    )
    for r in rows:
        r.update(r.pop("x"))
    names = ctx.strings([r["pid"] for r in rows] + [r["first_id"] for r in rows])
    out = []
    for r in rows:
        parent, first = names.get(r["pid"], {}), names.get(r["first_id"], {})
        r["parent_label"] = r["parent_name"] or first.get("parent_span_id", "")
        out.append((r, {
            "service": r["service"],
            "span": r["parent_name"],
            "count": int(r["seq"]),
            "trace_id": first.get("trace_id", ""),
            "span_id": parent.get("span_id") or first.get("parent_span_id", ""),
            "first_span_id": first.get("span_id", ""),
            "traces": int(r["traces"]),
            "occurrences": int(r["occurrences"]),
            "p50_count": float(r["p50"]),
            "total_ms": _ms(r["total_ns"]),
        }))
    return out


def _n_plus_one(ctx: _Context, o: dict[str, Any]) -> list[dict[str, Any]]:
    db = ctx.db()
    ctes = f"""
        WITH cand AS (
            SELECT g FROM {db} WHERE pid IS NOT NULL GROUP BY g HAVING count(*) >= $1
        ), {_repeats(f"(SELECT * FROM {db} WHERE g IN (SELECT g FROM cand))",
                     "any_value(nid) AS nid")}"""
    out = []
    for r, shared in _repeat_groups(ctx, o, ctes, "nid"):
        norm = ctx.norms[r["nid"]]
        out.append({
            "detector": "n_plus_one",
            "statement": norm,
            **shared,
            "message": (
                f"{r['service']} `{sqlnorm.short(norm)}` ran {r['seq']} times one after "
                f"another under `{r['parent_label']}` ({units.duration_ms(shared['total_ms'])} in all) in "
                f"{r['traces']} trace(s): load them with one query (a join or IN list)"
            ),
            "saved_ms": None,
        })
    return out


# ------------------------------------------------------------------- N+1 calls (HTTP/RPC)

#: Numeric and hex-id path segments of a URL become `{id}`: `/products/17` -> `/products/{id}`.
_ROUTE_OF_URL = r"""regexp_replace(regexp_replace(regexp_replace({u}, '[?#].*$', ''),
                    '^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*', ''), '/([0-9]+|[0-9a-fA-F-]{{16,}})(/|$)',
                    '/{{id}}\2', 'g')"""


def _n_plus_one_http(ctx: _Context, o: dict[str, Any]) -> list[dict[str, Any]]:
    """The same downstream route called >= min_count times one after another under one
    parent. The route is the callee's server span name (`GET /products/<int:product_id>`),
    else the client span's `http.route`, else its URL with ids templated."""
    url = _attr("c.attributes", URL_FULL_ATTRS, _EMPTY)
    method = _attr("c.attributes", HTTP_METHOD_ATTRS, "c.name")
    # the calls of parents that make enough of them, and (by row) their attributes
    busy = ctx.con.sql(
        """WITH c AS (
               SELECT id, pid FROM m WHERE kind = 'client' AND NOT is_db AND pid IS NOT NULL
           ), parents AS (
               SELECT pid FROM c GROUP BY pid HAVING count(*) >= $1
           )
           SELECT c.id FROM c SEMI JOIN parents USING (pid) ORDER BY c.id""",
        params=[o["min_count"]]).fetchnumpy()["id"]
    if not len(busy):
        return []
    ctx.register_rows("busy", busy)
    ctes = f"""
        WITH srv AS (
            SELECT pid, min(name) AS name FROM m
            WHERE kind = 'server' AND pid IN (SELECT id FROM busy)
            GROUP BY pid
        ), calls AS (
            SELECT c.id, c.tid, c.pid, c.service, c.start_ns, c.end_ns, c.k,
                   coalesce(srv.name,
                            nullif({_attr("c.attributes", HTTP_ROUTE_ATTRS)}, ''),
                            nullif({method} || ' ' || {_ROUTE_OF_URL.format(u=url)}, {method} || ' '),
                            c.name) AS route
            FROM busy c
            LEFT JOIN srv ON srv.pid = c.id
        ), {_repeats("(SELECT *, hash(pid, route) AS g FROM calls)",
                     "any_value(route) AS route")}"""
    out = []
    for r, shared in _repeat_groups(ctx, o, ctes, "route"):
        calls = _rows(
            ctx.con,
            f"""SELECT c.span_id, (c.start_ns - min(c.start_ns) OVER ()) AS offset_ns,
                      c.end_ns - c.start_ns AS duration_ns,
                      {_attr("c.attributes", URL_FULL_ATTRS, "c.name")} AS url,
                      (SELECT min(s.service) FROM m s WHERE s.pid = c.id) AS callee
               FROM busy c WHERE c.id IN (SELECT unnest($1::BIGINT[]))
               ORDER BY c.start_ns LIMIT 200""",
            [r["ids"]],
        )
        callee = next((c["callee"] for c in calls if c["callee"]), "")
        out.append({
            "detector": "n_plus_one_http",
            "statement": r["route"],
            "callee": callee,
            **shared,
            "p50_total_ms": _ms(r["p50_ns"]),
            "calls": [{"span_id": c["span_id"], "url": c["url"], "offset_ms": _ms(c["offset_ns"]),
                       "duration_ms": _ms(c["duration_ns"])} for c in calls],
            "message": (
                f"{r['service']} called {callee or 'its downstream'} `{r['route']}` {r['seq']} "
                f"times one after another under `{r['parent_label']}` "
                f"({units.duration_ms(shared['total_ms'])} in all) in {r['traces']} trace(s): fetch them in "
                f"one batch call"
            ),
            "saved_ms": None,
        })
    return out


# -------------------------------------------------------------------------- broken traces

def _port(a: str, port_names: Sequence[str], host_names: Sequence[str] = ()) -> str:
    """SQL for a span's port (JSON attributes `a`): the first port attribute that is a number,
    else the port of a `host:port` attribute, else the port in its URL; NULL if none."""
    ports = [f"try_cast({_attr(a, [n])} AS INTEGER)" for n in port_names]
    ports += [f"try_cast(nullif(regexp_extract({_attr(a, [n], _EMPTY)}, ':([0-9]+)$', 1), '') "
              "AS INTEGER)" for n in host_names]
    ports.append(f"try_cast(nullif(regexp_extract({_attr(a, URL_FULL_ATTRS, _EMPTY)}, "
                 "'^[a-zA-Z]+://[^/:]+:([0-9]+)', 1), '') AS INTEGER)")
    return f"coalesce({', '.join(ports)})"


def _client_port(a: str) -> str:
    return _port(a, CLIENT_PORT_ATTRS)


def _server_port(a: str) -> str:
    return _port(a, SERVER_PORT_ATTRS, HTTP_HOST_ATTRS)


def _broken_finding(reason: str, r: Mapping[str, Any], total: int, *, trace_id: str,
                    span_id: str, extra: Mapping[str, Any], message: str) -> dict[str, Any]:
    """One broken-trace finding: both reasons share every field but their exemplar and the
    `extra` evidence (which parent is missing, or which caller split the trace), so the
    report reads them alike."""
    traces = int(r["traces"])
    return {
        "detector": "broken_trace",
        "reason": reason,
        "service": r["service"],
        "span": r["name"],
        "statement": None,
        "count": traces,
        "traces": traces,
        "share": round(r["traces"] / total, 4),
        "trace_id": trace_id,
        "span_id": span_id,
        **extra,
        "message": message,
        "saved_ms": None,
    }


def _broken_trace(ctx: _Context, o: dict[str, Any]) -> list[dict[str, Any]]:
    total = ctx.traces()
    if total == 0:
        return []
    lo, hi = _one(ctx.con, "SELECT min(start_ns), max(end_ns) FROM m")
    edge = int(o["edge_ms"] * _NS)
    # Edge exclusion only makes sense when the run is much longer than the edge itself.
    use_edge = edge > 0 and (hi - lo) > 4 * edge
    need = max(int(o["min_traces"]), 1)
    share = float(o["min_share"])
    findings: list[dict[str, Any]] = []
    # Orphans (a parent named and never arrived) come resolved with the index; everything
    # after this only sees the (normally empty) suspects.
    orphan_rows = np.flatnonzero(ctx.frame.orphan)
    has_orphans = bool(len(orphan_rows))
    if has_orphans:
        ctx.register_rows("orphans", orphan_rows)
    inner = (
        "NOT $1 OR tid IN (SELECT tid FROM m WHERE tid IN (SELECT tid FROM {src}) GROUP BY tid "
        "HAVING min(start_ns) >= $2 + $4 AND max(end_ns) <= $3 - $4)"
    )
    orphans = _rows(
        ctx.con,
        f"""
        WITH per_trace AS (
            SELECT tid, count(*) AS n FROM orphans GROUP BY tid
        ), rooted AS (
            SELECT DISTINCT tid FROM m WHERE pid IS NULL AND tid IN (SELECT tid FROM orphans)
        ), k AS (
            -- A trace whose only top span is one orphan entered the system from an untraced
            -- (or unexported) caller, e.g. a load generator: its top is missing, not its
            -- middle. Reported only with entry_orphans.
            SELECT * FROM orphans
            WHERE ($5 OR tid IN (SELECT tid FROM per_trace WHERE n > 1)
                      OR tid IN (SELECT tid FROM rooted))
              AND ({inner.format(src="orphans")})
        )
        SELECT service, name, kind, count(DISTINCT tid) AS traces, count(*) AS spans,
               min(trace_id) AS trace_id, arg_min(span_id, (trace_id, span_id)) AS span_id,
               arg_min(parent_span_id, (trace_id, span_id)) AS parent_span_id
        FROM k GROUP BY service, name, kind ORDER BY traces DESC, service, name
        """,
        [use_edge, lo, hi, edge, bool(o["entry_orphans"])],
    ) if has_orphans else []
    for r in orphans:
        if r["traces"] < need or r["traces"] < share * total:
            continue
        findings.append(_broken_finding(
            "missing_parent", r, total, trace_id=r["trace_id"], span_id=r["span_id"],
            extra={"missing_parent_span_id": r["parent_span_id"]},
            message=(
                f"{r['service']} `{r['name']}` ({r['kind']}) names a parent span that never "
                f"arrived in {r['traces']} of {total} traces: the caller's spans were lost or "
                f"not exported"
            ),
        ))

    # Split traces: a root server span that runs inside a client span of another trace
    # which has no child of its own (the callee started a new trace instead).
    skew = int(o["skew_ms"] * _NS)
    # a client call (not a query) that no span names as its parent
    f = ctx.frame
    pid = f.pid[(f.pid >= 0) & (f.pid < ctx.ix.n)]
    has_child = np.zeros(ctx.ix.n, bool)
    has_child[pid] = True
    kind_codes, kinds = ctx.ix.codes("kind")
    client = np.isin(kind_codes, [i for i, k in enumerate(kinds) if k == "client"])
    is_db = f.table.column("is_db").to_numpy()
    dangling_rows = np.flatnonzero(client & ~is_db & ~has_child)
    del pid, has_child, client, is_db
    if not len(dangling_rows):
        return findings
    ctx.register_rows("dangling_rows", dangling_rows)
    ctx.con.execute(
        f"""CREATE OR REPLACE TEMP TABLE dangling AS
           SELECT c.tid, c.trace_id, c.span_id, c.service, c.name, c.start_ns,
                  c.end_ns, coalesce({_client_port("c.attributes")}, 0) AS port
           FROM dangling_rows c"""
    )
    # Each root server span is matched (ASOF: by port, then the latest start) to the dangling
    # client that called it; the client must enclose it in time. Under concurrency the match
    # may be another broken call of the same kind, which counts the same.
    splits = _rows(
        ctx.con,
        f"""
        WITH r AS (
            SELECT trace_id, span_id, service, name, start_ns, end_ns,
                   coalesce({_server_port("attributes")}, 0) AS port
            FROM spans WHERE parent_span_id = '' AND kind = 'server'
        ), rp AS (
            -- each root's trace by its code, as `m` numbers it
            SELECT t.tid, r.* FROM r JOIN slo_traces t USING (trace_id)
        ), pairs AS (
            SELECT r.tid, r.trace_id, r.span_id, r.service, r.name, r.end_ns - r.start_ns AS dur,
                   c.trace_id AS caller_trace_id, c.span_id AS caller_span_id,
                   c.service AS caller_service, c.name AS caller_name,
                   c.end_ns AS c_end, r.end_ns AS r_end, c.tid AS c_tid, c.service AS c_service
            FROM rp r ASOF JOIN dangling c ON r.port = c.port AND r.start_ns + $5 >= c.start_ns
        ), mm AS (
            SELECT * FROM pairs
            WHERE c_end + $5 >= r_end AND c_tid <> tid AND c_service <> service
        ), k AS (
            SELECT * FROM mm WHERE {inner.format(src="mm")}
        )
        SELECT service, name, count(*) AS traces,
               arg_max(struct_pack(caller_trace_id, caller_span_id, caller_service, caller_name,
                                   split_trace_id := trace_id, split_span_id := span_id),
                       (dur, trace_id, span_id)) AS x
        FROM k GROUP BY service, name ORDER BY traces DESC, service, name
        """,
        [use_edge, lo, hi, edge, skew],
    )
    for r in splits:
        r.update(r.pop("x"))
        if r["traces"] < need or r["traces"] < share * total:
            continue
        findings.append(_broken_finding(
            "split_trace", r, total, trace_id=r["caller_trace_id"], span_id=r["caller_span_id"],
            extra={
                "caller_service": r["caller_service"],
                "caller_span": r["caller_name"],
                "split_trace_id": r["split_trace_id"],
                "split_span_id": r["split_span_id"],
            },
            message=(
                f"{r['caller_service']} `{r['caller_name']}` called {r['service']} without trace "
                f"context: `{r['name']}` started a new trace instead ({r['traces']} split traces); "
                f"propagate `traceparent` on that call"
            ),
        ))
    return findings


# -------------------------------------------------------------------------- serial fan-out


def _serial_fanout(ctx: _Context, o: dict[str, Any]) -> list[dict[str, Any]]:
    # Runs of sequential calls are found on timing alone; the callee of each call (the
    # service of its child span, else the host in its URL, else its name) is looked up only
    # for the runs that are long enough and would save enough.
    found = ctx.con.sql(
        """
        WITH c0 AS (
            SELECT id, pid, start_ns, end_ns, k FROM m
            WHERE kind = 'client' AND NOT is_db AND pid IS NOT NULL AND end_ns - start_ns >= $1
        ), sorted AS (
            -- (`list(... ORDER BY ...)` keeps every group's rows in memory until it sorts
            -- them: at 100M spans past any memory limit; a plain list spills, sorted after)
            SELECT pid, list_sort(list(struct_pack(s := start_ns, k := k, e := end_ns))) AS l
            FROM c0 GROUP BY pid HAVING count(*) >= $2
        ), lists AS (
            SELECT pid, list_transform(l, lambda x: x.s) AS s, list_transform(l, lambda x: x.e) AS e
            FROM sorted
        ), cand AS (
            -- cheap pre-selection: parents with enough calls that follow their predecessors
            -- closely; the exact runs are then found with window functions on these only
            SELECT pid FROM lists
            WHERE len(list_filter(range(2, len(s) + 1), lambda i: s[i] >= list_max(e[1:i - 1])
                                  AND s[i] - list_max(e[1:i - 1]) <= $3)) >= $2 - 1
        ), w AS (
            SELECT c0.*, max(end_ns) OVER (PARTITION BY pid ORDER BY start_ns, k
                                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
            FROM c0 SEMI JOIN cand ON c0.pid = cand.pid
        ), r AS (
            SELECT *, sum(CASE WHEN prev_end IS NULL OR start_ns < prev_end OR start_ns - prev_end > $3
                               THEN 1 ELSE 0 END)
                      OVER (PARTITION BY pid ORDER BY start_ns, k) AS run
            FROM w
        ), runs AS (
            SELECT pid, run, count(*) AS n, sum(end_ns - start_ns) - max(end_ns - start_ns) AS saved_ns
            FROM r GROUP BY pid, run HAVING count(*) >= $2 AND saved_ns >= $4
        )
        SELECT r.id, r.run FROM r SEMI JOIN runs ON r.pid = runs.pid AND r.run = runs.run
        ORDER BY r.id
        """,
        params=[int(o["min_call_ms"] * _NS), max(int(o["min_calls"]), 2),
                int(o["max_gap_ms"] * _NS), int(o["min_saved_ms"] * _NS)],
    ).to_arrow_table()
    if not found.num_rows:
        return []
    # the calls of long enough runs, with their strings and attributes, by row
    ctx.register_rows("fan_rows", found.column("id").to_numpy())
    ctx.con.register("fan_runs", found)
    rows = _rows(
        ctx.con,
        f"""
        WITH calls AS (
            SELECT c.pid, f.run, c.id, c.start_ns, c.end_ns, c.k, c.service, c.name,
                   c.trace_id, c.span_id, c.attributes
            FROM fan_rows c JOIN fan_runs f USING (id)
        ), callee AS (
            SELECT ch.pid AS id, min(ch.service) AS callee
            FROM m ch SEMI JOIN calls ON ch.pid = calls.id GROUP BY ch.pid
        ), named AS (
            SELECT calls.* EXCLUDE (attributes), coalesce(callee.callee,
                       nullif(regexp_extract({_attr("calls.attributes", URL_FULL_ATTRS, _EMPTY)},
                                             '^[a-zA-Z]+://([^/?#]+)', 1), ''),
                       calls.name) AS callee
            FROM calls LEFT JOIN callee ON callee.id = calls.id
        ), runs2 AS (
            SELECT pid, run, any_value(service) AS service, any_value(trace_id) AS trace_id,
                   count(*) AS n, count(DISTINCT callee) AS services,
                   sum(end_ns - start_ns) - max(end_ns - start_ns) AS saved_ns,
                   max(end_ns) - min(start_ns) AS span_ns, list(callee ORDER BY start_ns, k) AS callees
            FROM named GROUP BY pid, run HAVING count(DISTINCT callee) >= $1
        ), hit AS (
            SELECT runs2.*, coalesce(p.name, '') AS parent_name
            FROM runs2 LEFT JOIN m p ON p.id = runs2.pid
        )
        SELECT service, parent_name, count(DISTINCT trace_id) AS traces,
               median(saved_ns) AS p50_saved_ns,
               arg_max(struct_pack(trace_id, pid, n, saved_ns, span_ns, callees),
                       (saved_ns, trace_id)) AS x
        FROM hit GROUP BY service, parent_name ORDER BY traces DESC, service, parent_name
        """,
        [int(o["min_services"])],
    )
    ctx.con.unregister("fan_runs")
    for r in rows:
        r.update(r.pop("x"))
    parent_ids = ctx.strings([r["pid"] for r in rows])
    for r in rows:
        r["parent_span_id"] = parent_ids.get(r["pid"], {}).get("span_id")
    out = []
    for r in rows:
        parents = _one(
            ctx.con,
            "SELECT count(DISTINCT tid) FROM m WHERE service = $1 AND name = $2",
            [r["service"], r["parent_name"]],
        )[0]
        if r["traces"] < int(o["min_traces"]) or r["traces"] < o["min_share"] * max(parents, 1):
            continue
        saved = _ms(r["p50_saved_ns"])
        callees = [_service_at(ctx, c) for c in r["callees"]]
        out.append(
            {
                "detector": "serial_fanout",
                "service": r["service"],
                "span": r["parent_name"],
                "statement": None,
                "count": int(r["n"]),
                "trace_id": r["trace_id"],
                "span_id": r["parent_span_id"],
                "traces": int(r["traces"]),
                "callees": callees,
                "saved_ms": saved,
                "max_saved_ms": _ms(r["saved_ns"]),
                "serial_ms": _ms(r["span_ns"]),
                "message": (
                    f"{r['service']} `{r['parent_name']}` calls {', '.join(callees)} one after another "
                    f"in {r['traces']} trace(s); in parallel they would save about {units.duration_ms(saved)} "
                    f"per request (p50; {units.duration_ms(_ms(r['saved_ns']))} in the worst trace)"
                ),
            }
        )
    return out


_HOST_PORT = re.compile(r"^[^/:]+:(\d{1,5})$")


def _service_at(ctx: _Context, callee: str) -> str:
    """A `host:port` callee (a call whose callee span is missing) named by the service whose
    server spans listen on that port, when the run has one; otherwise unchanged."""
    m = _HOST_PORT.match(callee)
    if not m:
        return callee
    port = m.group(1)
    row = ctx.con.execute(
        "SELECT service FROM spans WHERE kind = 'server' AND regexp_matches(attributes, $1) LIMIT 1",
        [f'"(server|net\\.host)\\.port":"?{port}"?[,}}]'],
    ).fetchone()
    return str(row[0]) if row else callee


# ------------------------------------------------------------------------ slow statements


def _slow_statement(ctx: _Context, o: dict[str, Any]) -> list[dict[str, Any]]:
    db = ctx.db()
    rows = _rows(
        ctx.con,
        f"""
        WITH st AS (
            SELECT tid, service, nid, sum(end_ns - start_ns) AS ns
            FROM {db} GROUP BY tid, service, nid HAVING sum(end_ns - start_ns) >= $1
        ), roots AS (
            -- The request: the trace's longest server span (its entry into the system; a
            -- load generator's client root would add wire time), else its longest root.
            SELECT tid, max(end_ns - start_ns) AS root_ns,
                   arg_max(name, (end_ns - start_ns, name)) AS root_name,
                   arg_max(service, (end_ns - start_ns, name)) AS root_service
            FROM (
                SELECT *, bool_or(kind = 'server') OVER (PARTITION BY tid) AS has_server
                FROM m WHERE tid IN (SELECT tid FROM st) AND (kind = 'server' OR pid IS NULL)
            )
            WHERE kind = 'server' OR NOT has_server
            GROUP BY tid
        ), hit AS (
            SELECT st.*, roots.root_ns, roots.root_name, roots.root_service,
                   st.ns / roots.root_ns AS share
            FROM st JOIN roots USING (tid)
            WHERE roots.root_ns > 0 AND st.ns >= $2 * roots.root_ns
        )
        SELECT service, root_name, nid, count(*) AS traces, median(share) AS p50_share,
               median(ns) AS p50_ns, min(root_service) AS root_service,
               arg_max(struct_pack(tid, ns), (ns, tid)) AS x
        FROM hit GROUP BY service, root_name, nid HAVING count(*) >= $3
        ORDER BY traces DESC, service, nid
        """,
        [int(o["min_ms"] * _NS), float(o["min_share"]), max(int(o["min_traces"]), 1)],
    )
    for r in rows:
        r.update(r.pop("x"))
    # The exemplar span (the statement's longest run in the worst trace) only for the rows
    # reported: an arg_max per (trace, service, statement) over every DB span cost 3 s at 10M.
    if rows:
        ctx.con.register("slo_slow_hits", pa.table({
            "k": pa.array(range(len(rows)), pa.int64()),
            "tid": pa.array([r["tid"] for r in rows], pa.int32()),
            "service": pa.array([r["service"] for r in rows], pa.string()),
            "nid": pa.array([r["nid"] for r in rows], pa.int32())}))
        try:
            ids = dict(ctx.con.execute(
                f"""SELECT h.k, arg_max(d.id, (d.end_ns - d.start_ns, d.k))
                    FROM {db} d JOIN slo_slow_hits h
                    ON d.tid = h.tid AND d.service = h.service AND d.nid = h.nid
                    GROUP BY h.k""").fetchall())
        finally:
            ctx.con.unregister("slo_slow_hits")
        for k, r in enumerate(rows):
            r["id"] = ids.get(k)
    names = ctx.strings([r["id"] for r in rows])
    out = []
    for r in rows:
        span = names.get(r["id"], {})
        norm = ctx.norms[r["nid"]]
        p50 = _ms(r["p50_ns"])
        out.append(
            {
                "detector": "slow_statement",
                "service": r["service"],
                "span": r["root_name"],
                "statement": norm,
                "count": int(r["traces"]),
                "trace_id": span.get("trace_id", ""),
                "span_id": span.get("span_id", ""),
                "request_service": r["root_service"],
                "share": round(float(r["p50_share"]), 4),
                "p50_ms": p50,
                "max_ms": _ms(r["ns"]),
                "message": (
                    f"{r['service']} `{sqlnorm.short(norm)}` takes {float(r['p50_share']) * 100:.0f}% "
                    f"of `{r['root_name']}` (p50 {units.duration_ms(p50)}) in {r['traces']} trace(s): "
                    f"check its plan (index, scan, lock)"
                ),
                "saved_ms": None,
            }
        )
    return out


# ------------------------------------------------------------------------- sensitive data

# Pre-selection in DuckDB (RE2): cheap, generous; Python then verifies each value.
_PRESELECT_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_PRESELECT_RARE = marks.SENSITIVE_RARE  # (tokens and card numbers; compaction records it)
_PRESELECT = f"{_PRESELECT_EMAIL}|{_PRESELECT_RARE}"
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_BEARER = re.compile(r"\bbearer\s+([A-Za-z0-9._~+/=-]{8,})", re.I)
_CARD = re.compile(r"(?<![0-9A-Za-z])\d(?:[ -]?\d){12,18}(?![0-9A-Za-z])")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies (and 90% of random numbers fail)."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_brand(digits: str) -> str | None:
    """Brand by issuer prefix and length; None if no major brand issues such a number."""
    n = len(digits)
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if n == 16 and (51 <= int(digits[:2]) <= 55 or 2221 <= int(digits[:4]) <= 2720):
        return "mastercard"
    if n == 15 and digits[:2] in ("34", "37"):
        return "amex"
    if 16 <= n <= 19 and (
        digits.startswith("6011") or digits.startswith("65") or 644 <= int(digits[:3]) <= 649
    ):
        return "discover"
    return None


def find_sensitive(value: str) -> list[tuple[str, str]]:
    """(kind, masked sample) for every e-mail address, bearer token or card number in `value`."""
    hits: list[tuple[str, str]] = []
    for m in _EMAIL.finditer(value):
        local, _, domain = m.group(0).partition("@")
        hits.append(("email", f"{local[:1]}***@{domain}"))
    for m in _BEARER.finditer(value):
        hits.append(("bearer_token", f"Bearer {m.group(1)[:4]}…"))
    for m in _CARD.finditer(value):
        digits = re.sub(r"[ -]", "", m.group(0))
        if 13 <= len(digits) <= 19 and _card_brand(digits) and luhn_ok(digits):
            hits.append(("card_number", f"{digits[:4]} **** {digits[-4:]}"))
    return hits


_KIND_WORDS = {"email": "an e-mail address", "bearer_token": "a bearer token", "card_number": "a card number"}


def _sensitive_data(ctx: _Context, o: dict[str, Any]) -> list[dict[str, Any]]:
    limit = max(int(o["max_rows"]), 1)
    # A regular expression per span costs about 0.45 us whatever it is (10M spans: 4.5 s);
    # searched over a whole segment's attributes at once it runs at RE2's pace. Tokens and
    # card numbers are rare: when no segment holds one, only spans with an "@" are searched.
    if ctx.attributes_absent([_PRESELECT_RARE, marks.AT]):
        return []  # (an e-mail address has an "@")
    if ctx.attributes_match(_PRESELECT_RARE):
        where, params = "regexp_matches(attributes, $1)", [_PRESELECT, limit]
    else:
        where = "contains(attributes, '@') AND regexp_matches(attributes, $1)"
        params = [_PRESELECT_EMAIL, limit]
    rows = ctx.con.execute(
        "SELECT trace_id, span_id, service, name, attributes FROM spans "
        f"WHERE {where} ORDER BY trace_id, span_id LIMIT $2", params,
    ).fetchall()
    capped = len(rows) >= limit  # counts are then lower bounds
    groups: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for trace_id, span_id, service, name, attributes in rows:
        try:
            attrs = json.loads(attributes)
        except ValueError:
            continue
        if not isinstance(attrs, dict):
            continue
        hits: dict[tuple[str, str], str] = {}
        for key, value in attrs.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, bool) or not isinstance(v, str | int):
                    continue
                for kind, sample in find_sensitive(str(v)):
                    hits.setdefault((key, kind), sample)
        for (key, kind), sample in hits.items():
            g = groups.setdefault(
                (service, name, key, kind),
                {"spans": 0, "traces": set(), "trace_id": trace_id, "span_id": span_id,
                 "sample": sample},
            )
            g["spans"] += 1
            g["traces"].add(trace_id)
    out = []
    for (service, name, key, kind), g in sorted(groups.items(), key=lambda kv: (-kv[1]["spans"], kv[0])):
        out.append(
            {
                "detector": "sensitive_data",
                "service": service,
                "span": name,
                "statement": None,
                "count": g["spans"],
                "trace_id": g["trace_id"],
                "span_id": g["span_id"],
                "attribute": key,
                "kind": kind,
                "sample": g["sample"],
                "traces": len(g["traces"]),
                "message": (
                    f"{service} `{name}` records {_KIND_WORDS[kind]} in attribute `{key}` "
                    f"(e.g. {g['sample']}) on {'at least ' if capped else ''}{g['spans']} "
                    f"span(s): redact it before export"
                ),
                "saved_ms": None,
            }
        )
    return out


_NEEDED = ("trace_id", "span_id", "parent_span_id", "service", "name", "kind", "start_ns",
           "end_ns", "db_system", "db_statement", "attributes")

_DETECTORS: dict[str, Callable[[_Context, dict[str, Any]], list[dict[str, Any]]]] = {
    "n_plus_one": _n_plus_one,
    "n_plus_one_http": _n_plus_one_http,
    "broken_trace": _broken_trace,
    "serial_fanout": _serial_fanout,
    "slow_statement": _slow_statement,
    "sensitive_data": _sensitive_data,
}


def run_detectors(
    spans: pa.Table, config: dict[str, dict[str, Any]] | None = None, *, sql: str | None = None,
    con: Any = None, frame: SpanFrame | None = None, files: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Findings of every detector over a span table (`slo.ingest.spans.SCHEMA`).

    `config` maps detector name -> options overriding `DEFAULTS`, as validated by
    `slo.judge.spec` (`Spec.detectors`). Each finding: {"detector", "service", "span", "statement",
    "count", "trace_id", "span_id", "message", "fails", "saved_ms", ...evidence}; failing
    findings first. `sql`: read the spans from this DuckDB query instead (every column of
    `spans`, which then only says how many there are). `con`: a DuckDB connection whose
    database to run in (`slo.ingest.runsource.RunSource.con`: the check's reads and the
    detectors then share one memory limit, instead of each spilling only past its own).
    `frame`: the run's `slo.judge.spanframe.span_frame` when the caller has indexed `spans`
    already (the check): its parents are then resolved once for both. `files`: the Parquet
    files `sql` reads (`RunSource.files`; more is fine): sensitive_data searches their
    attributes whole first.
    """
    options = _options(config)
    if spans.num_rows == 0:
        return []
    missing = [c for c in _NEEDED if c not in spans.column_names]
    if missing and sql is None:
        raise SloError(f"span table lacks column(s) {', '.join(missing)} (see slo.ingest.spans.SCHEMA)")
    ctx = _Context(spans, sql, con, frame, files)
    try:
        findings = []
        for name, detect in _DETECTORS.items():
            try:
                found = detect(ctx, options[name])
            except duckdb.Error as e:  # odd data must not end in a traceback
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if isinstance(e, duckdb.OutOfMemoryException):  # what the user can change
                    limit = ctx.con.sql("SELECT current_setting('memory_limit')").fetchall()
                    first += (f" (DuckDB's limit is {limit[0][0]}: set SLO_DUCKDB_MEMORY "
                              "higher, e.g. SLO_DUCKDB_MEMORY=4GB)")
                raise SloError(f"detector {name} could not run over these spans: {first}") from e
            for f in found:
                f["fails"] = bool(options[name]["fail"])
                findings.append(f)
    finally:
        ctx.con.close()
    order = {name: i for i, name in enumerate(_DETECTORS)}
    findings.sort(key=lambda f: (not f["fails"], order[f["detector"]]))
    return findings
