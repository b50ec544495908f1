"""The spans of a stored run as a DuckDB relation over its Parquet files, read on demand.

`slo check` holds in memory only the columns it computes over for every span (ids, names,
times, promoted attributes). The JSON attributes, the largest column, stay on disk: DuckDB
scans them where a stage needs them (the detectors, the sampling signals), in its own
threads and within its memory limit, and whole rows come back only for the handful of
traces a report shows. The relation means exactly what `SpanStore.read` means: the run's
spans, plus the unlabelled spans of its traces (adopted), inside the time window.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from slo.ingest import marks
from slo.ingest.spans import SCHEMA

#: What DuckDB may hold before it spills to its temp directory (DuckDB's default: 80% of RAM);
#: unset, `memory_limit` sizes it to the run.
MEMORY_LIMIT = os.environ.get("SLO_DUCKDB_MEMORY")


def memory_limit(spans: int = 0) -> str:
    """DuckDB's memory limit for a run of `spans` spans (`SLO_DUCKDB_MEMORY` if set).

    The detectors' queries are what fill it, and some of their operators do not spill: at
    10M spans every detector ran at 200MB and slow_statement not at 100MB; at 100M spans
    512MB ran out. So 24 bytes a span, and 256MB at least (10M spans: a peak of 1.83-1.86 GiB
    at 256MB against 1.94-1.96 GiB at 512MB, for the same CPU; bench/check.py)."""
    return MEMORY_LIMIT or f"{max(256, (24 * spans) >> 20)}MB"


def fit(con: Any, spans: int) -> None:
    """Set DuckDB connection `con`'s memory limit for a run of this many spans."""
    con.execute(f"SET memory_limit = '{memory_limit(spans)}'")


def connect(temp_dir: Path | None = None, spans: int = 0) -> Any:
    """A DuckDB connection that spills to `temp_dir` (default: the system's) past
    `memory_limit(spans)` instead of growing with the run."""
    import duckdb

    con = duckdb.connect()
    fit(con, spans)
    # a directory of its own (DuckDB makes it when it first spills and removes it on close)
    temp = temp_dir or Path(tempfile.gettempdir()) / f"slo-duckdb-{os.getpid()}-{id(con):x}"
    con.execute(f"SET temp_directory = '{str(temp).replace(chr(39), chr(39) * 2)}'")
    return con


def _files(paths: Sequence[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def attributes_of(con: Any, relation: str, trace_ids: pa.Array | pa.ChunkedArray,
                  span_ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The attributes JSON of these spans (pairs of ids) in DuckDB `relation` (a name or a
    parenthesized query over spans), in the order given ("{}" for a span not found)."""
    want = pa.table({"i": pa.array(np.arange(len(trace_ids), dtype=np.int64)),
                     "trace_id": trace_ids, "span_id": span_ids})
    con.register("slo_wanted_spans", want)
    try:
        t = con.sql(
            f"SELECT w.i, coalesce(any_value(s.attributes), '{{}}') AS attributes "
            f"FROM slo_wanted_spans w LEFT JOIN {relation} s "
            "ON s.trace_id = w.trace_id AND s.span_id = w.span_id "
            "GROUP BY w.i ORDER BY w.i").to_arrow_table()
    finally:
        con.unregister("slo_wanted_spans")
    return t.column("attributes").combine_chunks().cast(pa.string())


class RunSource:
    """One or more runs of a span store, as SQL over their Parquet segments.

    Build it with `SpanStore.source(...)` (which returns None while spans of the run still
    sit in the write-ahead log: then the whole table is read as before).
    """

    def __init__(self, own: Sequence[Path], unlabelled: Sequence[Path], *,
                 start_ns: int | None = None, end_ns: int | None = None,
                 temp_dir: Path | None = None):
        window = []
        if start_ns is not None:
            window.append(f"start_ns >= {int(start_ns)}")
        if end_ns is not None:
            window.append(f"start_ns < {int(end_ns)}")
        where = f" WHERE {' AND '.join(window)}" if window else ""
        own_sql = f"SELECT * FROM read_parquet({_files(own)})"
        sql = f"SELECT * FROM ({own_sql}){where}"
        if unlabelled:
            # the spans of services that copy no run id join the run of their trace
            sql += (f" UNION ALL SELECT o.* REPLACE (r.run_id AS run_id) FROM "
                    f"read_parquet({_files(unlabelled)}) o JOIN (SELECT trace_id, "
                    f"min(run_id) AS run_id FROM ({own_sql}) GROUP BY trace_id) r "
                    f"ON o.trace_id = r.trace_id"
                    + where.replace("start_ns", "o.start_ns"))
        self.sql = sql
        #: every file the relation reads from
        self.files = [*own, *unlabelled]
        self.temp_dir = temp_dir
        self._con: Any = None

    @property
    def con(self) -> Any:
        """The DuckDB connection (made on first use)."""
        if self._con is None:
            self._con = connect(self.temp_dir)
        return self._con

    def fit(self, spans: int) -> None:
        """Size DuckDB's memory limit to a run of this many spans (`memory_limit`)."""
        fit(self.con, spans)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def traces(self, trace_ids: Iterable[str],
               windows: Sequence[tuple[int, int]] = ()) -> pa.Table:
        """Every column of every span of these traces (`slo.ingest.spans.SCHEMA`).

        `windows`: (first, last) start_ns that every span of these traces lies within
        (`RunIndex` knows them): DuckDB then skips the row groups outside them by their
        statistics instead of reading every column of the run (10M spans: 0.3 -> 0.1 CPU-s
        for ten traces)."""
        ids = sorted(set(trace_ids))
        if not ids:
            return SCHEMA.empty_table()
        where = "trace_id IN (SELECT unnest($1::VARCHAR[]))"
        if windows:
            spans = " OR ".join(f"start_ns BETWEEN {int(lo)} AND {int(hi)}" for lo, hi in windows)
            where += f" AND ({spans} OR start_ns IS NULL)"
        t = self.con.sql(f"SELECT * FROM ({self.sql}) WHERE {where}",
                         params=[ids]).to_arrow_table()
        return t.select(SCHEMA.names).cast(SCHEMA)

    def attributes_of(self, trace_ids: pa.Array | pa.ChunkedArray,
                      span_ids: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The attributes JSON of these spans (pairs of ids), in the order given ("{}" for a
        span not found)."""
        return attributes_of(self.con, f"({self.sql})", trace_ids, span_ids)

    def attributes_matching(self, pattern: str, any_of: Sequence[str] = ()) -> pa.Array:
        """The attributes JSON of the spans where the RE2 `pattern` matches somewhere.

        `any_of`: substrings one of which every match contains; a plain substring search
        first spares the regular expression nearly every span (a run's worth of JSON); when
        the files' records say none of them is there (`slo.ingest.marks`), nothing is read."""
        if any_of and marks.absent(self.files, [re.escape(w) for w in any_of]):
            return pa.array([], pa.string())
        where = "regexp_matches(attributes, $1)"
        if any_of:
            words = " OR ".join(f"contains(attributes, ${i + 2})" for i in range(len(any_of)))
            where = f"({words}) AND {where}"
        t = self.con.sql(f"SELECT attributes FROM ({self.sql}) WHERE {where}",
                         params=[pattern, *any_of]).to_arrow_table()
        return t.column("attributes").combine_chunks().cast(pa.string())

    def cut_calls(self, trace_ids: pa.Array, span_ids: pa.Array, peer: str
                  ) -> tuple[int, list[str]]:
        """Of these client calls (pairs of ids: the calls no server span answered in their
        trace), the ones whose caller service, span name and called host:port (`peer`, an
        RE2 pattern over the attributes whose group 1 is the host:port) some other client
        call of the run has, answered: how many, and their distinct trace ids.

        `slo.judge.completeness` over the store's files: the unanswered calls are few, so
        DuckDB scans the client spans once and only their trace ids come back."""
        if len(trace_ids) == 0:
            return 0, []
        self.con.register("slo_unanswered", pa.table({"trace_id": trace_ids,
                                                      "span_id": span_ids}))
        try:
            cut = self.con.sql(
                f"""WITH c AS MATERIALIZED (
                        SELECT trace_id, span_id, service || '|' || name || '|' ||
                               coalesce(regexp_extract(attributes, $1, 1), '') AS key
                        FROM ({self.sql})
                        WHERE kind = 'client' AND coalesce(db_system, '') = ''
                    ), served AS (
                        SELECT DISTINCT c.key FROM c ANTI JOIN slo_unanswered u
                        ON c.trace_id = u.trace_id AND c.span_id = u.span_id
                    )
                    SELECT c.trace_id, count(*) AS calls FROM c SEMI JOIN slo_unanswered u
                    ON c.trace_id = u.trace_id AND c.span_id = u.span_id
                    WHERE c.key IN (SELECT key FROM served) GROUP BY c.trace_id""",
                params=[peer]).to_arrow_table()
        finally:
            self.con.unregister("slo_unanswered")
        return int(pc.sum(cut["calls"]).as_py() or 0), cut["trace_id"].to_pylist()
