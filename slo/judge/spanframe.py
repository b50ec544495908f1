"""The detectors' view of a run: one row per span, every id a row number.

The detectors group spans by parent, trace and statement in DuckDB. Keyed on strings, DuckDB
hashed every trace and span id of the run again (and kept the hashes in a temp table that
spilled past its memory limit), after the check had already resolved each span's parent in
numpy (`slo.judge.tree.RunIndex.parent`): at 10M spans that second resolution cost about
7 CPU-seconds of about 55. Here the check's resolution is handed over as an Arrow table that
DuckDB scans in place, and strings are looked up by row only for what a finding shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from slo.judge.tree import RunIndex, hex64, trace_mix

BATCH_ROWS = 1 << 17


@dataclass
class SpanFrame:
    """`table` (what DuckDB scans as `m`) and the same ids as numpy for the joins that are
    cheaper there.

    `table` columns: `tid` (the trace's code, `RunIndex.trace_codes`), `id` (the row),
    `pid` (the parent's row; NULL for a root; for a span whose parent never arrived, a number
    past the last row, one per trace and missing parent, so its siblings still share it),
    `service`, `name`, `kind` (dictionary-encoded: DuckDB reads them as strings), `start_ns`,
    `end_ns` (NULLs as 0 and as the start), `is_db` (a DB system is named), `sh` (the raw
    statement's code into `statements`, NULL without one), `k` (a 64-bit key unique to the
    trace and span ids, for ties).

    Findings must not depend on the order the spans were read in, and rows are numbered in
    that order: `tid` numbers the traces in the order of their ids, and ties between spans
    (equal starts, equal durations) are broken on `k`, never on `id`.
    """

    ix: RunIndex
    table: pa.Table
    #: the parent's row as in `table` (synthetic past the last row for a missing parent),
    #: -1 for a root
    pid: np.ndarray
    #: rows whose parent never arrived (`pid` synthetic)
    orphan: np.ndarray
    #: the raw statements `sh` codes into ("" never appears)
    statements: list[str]
    #: the distinct trace ids by `tid` (sorted)
    trace_ids: pa.Array
    #: `table`'s sh as numpy (-1 for none)
    sh: np.ndarray

    def statement_spans(self, nid_of: np.ndarray) -> pa.Table:
        """The spans that ran a statement: `m`'s tid, id, pid, service, start_ns, end_ns and
        k, with `nid` (`nid_of[sh]`, the normalized statement) and `g`, one number per parent
        and statement. Built here from the frame's arrays (at 10M spans, DuckDB's join of `m`
        with the statements into a temp table cost about 1 CPU-s and 0.3 GB)."""
        nid = nid_of[self.sh]  # (sh -1: nid_of's last entry, -1)
        ran = nid >= 0
        nid = nid[ran]
        pid = self.pid[ran]
        g = pid.astype(np.int64) * len(nid_of) + nid
        # a filter, not a take: Arrow filters each batch in place of concatenating them
        t = self.table.select(["tid", "id", "pid", "service", "start_ns", "end_ns", "k"])
        t = t.filter(pa.array(ran))
        return _batched({**{c: t.column(c) for c in t.column_names},
                         "nid": pa.array(nid.astype(np.int32)), "g": pa.array(g)})


def _dictionary(ix: RunIndex, name: str) -> pa.DictionaryArray:
    codes, values = ix.codes(name)
    if (codes < 0).any():  # nulls read as "", as the detectors always compared them
        codes = np.where(codes < 0, len(values), codes)
        values = [*values, ""]
    width = pa.int8() if len(values) < 2**7 else pa.int16() if len(values) < 2**15 else pa.int32()
    return pa.DictionaryArray.from_arrays(pa.array(codes, width), pa.array(values, pa.string()))


def _times(ix: RunIndex) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    start = ix.column("start_ns")
    end = ix.column("end_ns")
    if start.null_count:
        start = pc.fill_null(start, 0)
    if end.null_count:
        end = pc.coalesce(end, start)
    return start, end


def _parents(ix: RunIndex) -> tuple[np.ndarray, np.ndarray]:
    """(parent row per span with missing parents numbered past the last row, -1 for roots;
    orphan mask)."""
    n = ix.n
    pid = ix.parent.astype(np.int64)
    lost = np.flatnonzero(ix.has_parent & (pid < 0))
    orphan = np.zeros(n, bool)
    if len(lost):
        # RunIndex leaves a span that names itself as its parent without one (a tree walk
        # would never end); for grouping, it is its own parent, as a join on the ids says
        named = ix.take("parent_span_id", lost)
        own = np.asarray(pc.equal(ix.take("span_id", lost), named)
                         .fill_null(False).to_numpy(zero_copy_only=False), bool)
        pid[lost[own]] = lost[own]
        lost, named = lost[~own], named.filter(pa.array(~own))
    if len(lost):
        orphan[lost] = True
        parent_codes = (named.dictionary_encode().indices
                        .to_numpy(zero_copy_only=False).astype(np.int64))
        pair = ix.trace_codes[lost].astype(np.int64) * (int(parent_codes.max()) + 1) + parent_codes
        _, missing = np.unique(pair, return_inverse=True)
        pid[lost] = n + missing
    return pid, orphan


def _traces(ix: RunIndex) -> tuple[np.ndarray, pa.Array]:
    """(trace code per row, distinct trace ids): codes in the order of the ids."""
    order = pc.sort_indices(ix.trace_ids).to_numpy(zero_copy_only=False)
    rank = np.empty(len(order), np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return rank[ix.trace_codes], ix.trace_ids.take(pa.array(order))


def _tie_keys(ix: RunIndex, tid: np.ndarray) -> np.ndarray:
    """A key per span that depends only on its trace and span ids, distinct for distinct
    pairs: the span id mixed with the trace's code (a bijection, as `RunIndex.parent` keys
    them); span ids that are not 16 hex digits are ranked by (trace, span id) instead."""
    sid = hex64(ix.column("span_id"))
    if sid is not None:
        sid ^= trace_mix(tid)
        return sid
    pairs = pa.table({"t": pa.array(tid), "s": pc.fill_null(ix.column("span_id"), "")})
    order = pc.sort_indices(pairs, sort_keys=[("t", "ascending"), ("s", "ascending")])
    keys = np.empty(ix.n, np.uint64)
    keys[order.to_numpy(zero_copy_only=False)] = np.arange(ix.n, dtype=np.uint64)
    return keys


def _batched(columns: dict[str, Any]) -> pa.Table:
    """A table in batches of BATCH_ROWS: DuckDB scans an Arrow table one batch per thread."""
    table = pa.table(columns)
    return pa.Table.from_batches(table.to_batches(max_chunksize=BATCH_ROWS), table.schema)


def span_frame(ix: RunIndex) -> SpanFrame:
    """The frame of a run's index (compute it where the index is built: it reads
    `RunIndex` caches that are not safe to fill from two threads at once)."""
    n = ix.n
    pid64, orphan = _parents(ix)
    wide = int(pid64.max(initial=0)) >= 2**31 - 1 or n >= 2**31 - 1
    pid = pid64 if wide else pid64.astype(np.int32)
    del pid64
    start, end = _times(ix)
    sys_codes, systems = ix.codes("db_system")
    named = np.array([bool(s) for s in systems] + [False], bool)
    stmt_codes, raw = ix.codes("db_statement")
    blank = np.array([not s for s in raw] + [True], bool)
    # one code per distinct non-empty statement (the "" value, if any, keeps its code but no
    # row is given it)
    sh = np.where(blank[stmt_codes], -1, stmt_codes).astype(np.int32)
    tid, trace_ids = _traces(ix)
    table = _batched({
        "tid": pa.array(tid, pa.int32()),
        "id": pa.array(np.arange(n, dtype=pid.dtype)),
        "pid": pa.array(pid, mask=pid < 0),
        "service": _dictionary(ix, "service"),
        "name": _dictionary(ix, "name"),
        "kind": _dictionary(ix, "kind"),
        "start_ns": start,
        "end_ns": end,
        "is_db": pa.array(named[sys_codes], pa.bool_()),
        "sh": pa.array(sh, mask=sh < 0),
        "k": pa.array(_tie_keys(ix, tid), pa.uint64()),
    })
    return SpanFrame(ix, table, pid, orphan, list(raw), trace_ids, sh)
