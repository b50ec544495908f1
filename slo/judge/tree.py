"""The run index: parent pointers and subtree queries over a whole span table, vectorized.

`db_queries` and `repeated_queries` are counted over the whole subtree of a selected span,
across services. Walking trace trees in Python costs seconds per million spans; instead we
resolve every span's parent row once (an Arrow hash lookup on "trace id + span id"), then
lift all DB spans up the tree one level at a time with numpy fancy indexing: after k steps
each DB span sits at its k-th ancestor, and wherever that ancestor is a selected span we have
a (selected span, DB span) pair. Trees are shallow (tens of levels at most), so this is a
handful of array operations per level, whatever the number of traces.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from slo.ingest.spanids import ID_COLUMNS, hex16, ids64
from slo.ingest.spanids import hex64 as hex64  # re-exported
from slo.ingest.spans import DB_STATEMENT_ATTRS, STATUS_ERROR, SYNONYMS
from slo.judge import sqlnorm

if TYPE_CHECKING:
    from slo.judge.spec import Selector

#: DB systems that are caches: a cache hit is the opposite of a query, so they do not count.
CACHE_SYSTEMS = frozenset({"redis", "memcached", "valkey"})
#: Deepest tree we follow; also what stops a (malformed) parent cycle.
MAX_DEPTH = 64


@dataclass
class CountStats:
    """Per selected span: DB queries in its subtree and the most repeated statement."""

    db_queries: np.ndarray  # int, one per selected span
    repeated: np.ndarray  # int, most runs of one normalized statement
    repeated_code: np.ndarray  # statement code of that statement, -1 if none
    per_statement: dict[str, dict[str, Any]]  # statement -> {service, mean, max, requests}


class RunIndex:
    """One span table, with parent rows resolved and the columns checks need as numpy."""

    def __init__(self, spans: pa.Table, source: Any = None):
        self.table = spans
        #: a `slo.ingest.runsource.RunSource` of the same spans, when `spans` lacks the attributes
        #: column: attributes and whole traces are then read from it, where they are needed
        self.source = source if "attributes" not in spans.column_names else None
        self.n = spans.num_rows
        self._dict_cache: dict[str, tuple[np.ndarray, list[str]]] = {}

    # -- columns --------------------------------------------------------------------------

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name)

    @cached_property
    def start_ns(self) -> np.ndarray:
        return self.column("start_ns").to_numpy()

    @cached_property
    def duration_ms(self) -> np.ndarray:
        ms = (self.column("end_ns").to_numpy() - self.start_ns).astype(np.float64)
        ms /= 1e6  # (in place: at 10M spans each temporary is 80 MB)
        return ms

    @cached_property
    def is_error(self) -> np.ndarray:
        status = self.column("status_code").to_numpy()
        http = self.column("http_status_code").to_numpy()
        kind_codes, kinds = self.codes("kind")
        server = np.isin(kind_codes, [i for i, k in enumerate(kinds) if k == "server"])
        return (status == STATUS_ERROR) | (server & (http >= 500))

    def codes(self, name: str) -> tuple[np.ndarray, list[str]]:
        """Dictionary codes of a string column and its distinct values (cached).

        A column read dictionary-encoded (`SpanStore.read(dictionary=...)`) keeps its codes:
        no string is touched; values its rows do not use (a Parquet dictionary covers a
        whole file) are dropped, so `values` means the same either way."""
        if name not in self._dict_cache:
            col = self.column(name)
            if self.n == 0:
                self._dict_cache[name] = (np.zeros(0, np.int32), [])
            elif pa.types.is_dictionary(col.type):
                self._dict_cache[name] = _dictionary_codes(col)
            else:
                enc = col.combine_chunks().dictionary_encode()
                idx = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False)
                self._dict_cache[name] = (idx.astype(np.int32), enc.dictionary.to_pylist())
        return self._dict_cache[name]

    @cached_property
    def _trace_dictionary(self) -> tuple[np.ndarray, pa.Array]:
        """(code per row, distinct trace ids): a trace_id column read dictionary-encoded keeps
        its codes (ids no row uses are dropped); plain strings are encoded here once."""
        col = self.column("trace_id")
        if col.null_count and pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())  # (never written so: ids are "" when missing)
        if not pa.types.is_dictionary(col.type):
            enc = col.combine_chunks().fill_null("").dictionary_encode()
            return (enc.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False),
                    enc.dictionary)
        col = col.unify_dictionaries()
        values = col.chunk(0).dictionary if col.num_chunks else pa.array([], pa.string())
        idx = _indices(col)
        used = np.bincount(idx, minlength=len(values)) > 0
        if not used.all():
            remap = np.full(len(values), -1, np.int32)
            remap[used] = np.arange(int(used.sum()), dtype=np.int32)
            idx, values = remap[idx], values.filter(pa.array(used))
        return idx, values

    @property
    def trace_codes(self) -> np.ndarray:
        """Each row's trace as a code into `trace_ids` (int32, in order of first appearance
        when read as plain strings)."""
        return self._trace_dictionary[0]

    @property
    def trace_ids(self) -> pa.Array:
        """The distinct trace ids, by code."""
        return self._trace_dictionary[1]

    @cached_property
    def n_traces(self) -> int:
        """Distinct trace ids."""
        if self.n == 0:
            return 0
        if pa.types.is_dictionary(self.column("trace_id").type):
            return len(self._trace_dictionary[1])
        return int(pc.count_distinct(self.column("trace_id")).as_py())

    def in_traces(self, trace_ids: Iterable[str]) -> np.ndarray:
        """Boolean mask of the rows that belong to these traces."""
        want = pa.array(sorted(set(trace_ids)), pa.string())
        if pa.types.is_dictionary(self.column("trace_id").type):
            idx, values = self._trace_dictionary
            return pc.is_in(values, value_set=want).to_numpy(zero_copy_only=False)[idx]
        return pc.is_in(self.column("trace_id"), value_set=want).to_numpy(
            zero_copy_only=False).astype(bool)

    def strings(self, name: str, rows: np.ndarray) -> pa.Array:
        """The values of string column `name` at these rows, as plain strings (a column
        read dictionary-encoded is decoded for these rows only)."""
        return self.take(name, rows)

    def take(self, name: str, rows: np.ndarray) -> pa.Array:
        """Column `name` at these rows, one array, dictionary-encoded strings decoded.

        Chunk by chunk: Arrow's take over a chunked column first concatenates every chunk
        (a read of 10M spans has hundreds), unifying their dictionaries on the way; the
        handful of rows a report names cost 0.3 s each time at 10M spans that way."""
        rows = np.asarray(rows, np.int64)
        if name == "trace_id" and self.n:
            idx, values = self._trace_dictionary
            return values.take(pa.array(idx[rows]))
        col = self.column(name)
        if name in ID_COLUMNS and pa.types.is_uint64(col.type):  # read packed
            return hex16(take_rows(col, rows))
        return take_rows(col, rows)

    def match(self, name: str, predicate: Callable[[Any], bool]) -> np.ndarray:
        """Boolean mask of rows whose `name` column satisfies `predicate` (per distinct value)."""
        idx, values = self.codes(name)
        ok = np.fromiter((bool(predicate(v)) for v in values), bool, len(values))
        if len(values) == 0:
            return np.zeros(self.n, bool)
        hits = np.flatnonzero(ok)
        if len(hits) == 1:  # (one value, as a selector names it: a compare, not a gather)
            return idx == hits[0]
        return np.append(ok, False)[idx]  # (a null's code, -1, is the appended False)

    # -- tree ------------------------------------------------------------------------------

    @cached_property
    def has_parent(self) -> np.ndarray:
        """Spans that name a parent (a non-empty parent span id)."""
        if self.n == 0:
            return np.zeros(0, bool)
        col = self.column("parent_span_id")
        if pa.types.is_uint64(col.type):  # read packed: no parent is null
            named = col.is_valid()
        else:
            named = pc.not_equal(pc.fill_null(col, ""), "")
        return named.to_numpy(zero_copy_only=False).astype(bool)

    @cached_property
    def parent(self) -> np.ndarray:
        """Row of each span's parent, -1 for roots and for parents that never arrived.

        Fast path: one 64-bit key per span, its span id mixed with its trace's code (a
        bijection of the code, so two traces never share a mix whatever their ids look
        like: tools that pad 64-bit trace ids, or copy their low half, made the trace id's
        own bits collide). The key's low bits are replaced by the row number and the keys
        sorted as plain values (a sort of values costs a third of an argsort: at 10M spans
        the two argsorts were half of this); the parents' keys likewise, then one sequential
        binary search. Every candidate is verified against the trace code and span id, and
        where the shortened keys of two spans agree the next one is tried. Span ids that are
        not 16 hex digits take the exact hash join on "trace id/span id" strings instead.
        """
        if self.n == 0:
            return np.zeros(0, np.int64)
        sid = ids64(self.column("span_id"))
        pid = ids64(self.column("parent_span_id"))
        if sid is None or pid is None:
            return self._parent_by_strings()
        n = self.n
        code = self._trace_dictionary[0]
        row_bits = np.uint64((1 << max(n.bit_length(), 1)) - 1)
        high = ~row_bits
        # (temporaries freed as soon as they are used: at 10M spans each one is 80 MB)
        mix = trace_mix(code)
        keys = sid ^ mix  # in place from here on: no temporaries of the run's size
        keys &= high
        keys |= np.arange(n, dtype=np.uint64)
        keys.sort()
        asking = np.flatnonzero(self.has_parent)
        wanted = pid[asking]
        wanted ^= mix[asking]
        del mix
        wanted &= high
        wanted |= asking.astype(np.uint64)
        del asking
        wanted.sort()
        rows = _row_type(n)
        child = (wanted & row_bits).astype(rows)
        wanted &= high
        pos = np.searchsorted(keys, wanted)  # the first key of that high part, if any
        np.minimum(pos, n - 1, out=pos)
        out = np.full(n, -1, rows)
        # every lookup at once, then again for the few whose shortened key another span
        # shares (arrays of the run's size kept to a few: at 10M spans each is 40-80 MB)
        todo: np.ndarray | None = None
        while todo is None or len(todo):
            at = pos if todo is None else pos[todo]
            kid = child if todo is None else child[todo]
            key = keys[at]
            same = (key & high) == (wanted if todo is None else wanted[todo])
            key &= row_bits
            cand = key.astype(rows)
            del key
            ok = same & (code[cand] == code[kid])
            ok &= sid[cand] == pid[kid]
            out[kid[ok]] = cand[ok]
            del cand, kid
            same &= ~ok  # the same shortened key, another span: try the next key
            more = np.flatnonzero(same) if todo is None else todo[same]
            del same, ok
            pos[more] += 1
            todo = more[pos[more] < n]
        out[out == np.arange(n, dtype=out.dtype)] = -1  # a span naming itself as parent
        return out

    def _parent_by_strings(self) -> np.ndarray:
        tid = self.column("trace_id")
        if pa.types.is_dictionary(tid.type):
            tid = tid.cast(pa.string())
        key = pc.binary_join_element_wise(tid, self.column("span_id"), "/")
        pkey = pc.binary_join_element_wise(tid, self.column("parent_span_id"), "/")
        idx = pc.index_in(pkey, value_set=key.combine_chunks())
        out = idx.fill_null(-1).to_numpy().astype(np.int64)
        out[out == np.arange(self.n)] = -1
        return out

    @cached_property
    def is_db(self) -> np.ndarray:
        """DB spans: a DB system or statement, and not a cache (Redis GET is not a query)."""
        if self.n == 0:
            return np.zeros(0, bool)
        sys_codes, systems = self.codes("db_system")
        stmt_codes, stmts = self.codes("db_statement")
        # (each with a last False: a null's code, -1, reads it)
        cache = np.array([s.lower() in CACHE_SYSTEMS for s in systems] + [False], bool)
        has_sys = np.array([s != "" for s in systems] + [False], bool)
        has_stmt = np.array([s != "" for s in stmts] + [False], bool)
        return (has_sys[sys_codes] | has_stmt[stmt_codes]) & ~cache[sys_codes]

    @cached_property
    def statements(self) -> tuple[np.ndarray, list[str]]:
        """Normalized statement code per row (-1 for non-DB spans) and the statements.

        DB spans without a statement are grouped by their span name (`SELECT`, ...); statements
        by `sqlnorm.key` (keyword case does not split them), named as `sqlnorm.shown` says.
        """
        out = np.full(self.n, -1, np.int64)
        uniq: dict[str, int] = {}
        db = self.is_db
        if not db.any():
            return out, []
        stmt_codes, stmts = self.codes("db_statement")
        shown = sqlnorm.shown(s for s in stmts if s)
        raw_map = np.array([uniq.setdefault(shown[s], len(uniq)) if s else -1
                            for s in stmts], np.int64)
        sc = raw_map[stmt_codes[db]]
        missing = sc < 0
        if missing.any():
            name_codes, names = self.codes("name")
            name_map = np.array([uniq.setdefault(n.upper() or "?", len(uniq)) for n in names],
                                np.int64)
            sc[missing] = name_map[name_codes[db][missing]]
        out[db] = sc
        return out, list(uniq)

    def _walk(self, rows: np.ndarray, cyclic: list[bool]
              ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Ancestors of `rows` level by level: (ancestor rows, positions in rows); appends to
        `cyclic` whether rows were still climbing after MAX_DEPTH levels."""
        cur, keep = rows.astype(_row_type(self.n), copy=False), np.arange(
            len(rows), dtype=_row_type(len(rows)))
        for _ in range(MAX_DEPTH):
            if len(cur) == 0:
                break
            yield cur, keep
            nxt = self.parent[cur]
            alive = nxt >= 0
            cur, keep = nxt[alive], keep[alive]
        cyclic.append(len(cur) > 0)

    def _levels(self, rows: np.ndarray) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
        """Ancestors of `rows` level by level: [(ancestor rows, positions in rows)], cyclic?"""
        cyclic: list[bool] = []
        levels = list(self._walk(rows, cyclic))
        return levels, cyclic[0]

    @cached_property
    def _db_levels(self) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
        return self._levels(self._db_rows)

    def _ancestor_pairs(self, rows: np.ndarray, selected_mask: np.ndarray,
                        levels: tuple[list[tuple[np.ndarray, np.ndarray]], bool] | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """(selected row, descendant row) for every descendant in `rows` (self included).

        Without cached `levels` the levels are walked one at a time, not all held at once:
        over every span of a large run they would be several times the run's ids."""
        climbing: list[bool] = []
        steps = levels[0] if levels is not None else self._walk(rows, climbing)
        sel_parts, desc_parts = [], []
        for cur, keep in steps:
            hit = selected_mask[cur]
            if hit.any():
                sel_parts.append(cur[hit])
                desc_parts.append(rows[keep[hit]])
        cyclic = levels[1] if levels is not None else climbing[0]
        if not sel_parts:
            e = np.zeros(0, np.int64)
            return e, e
        sel, desc = np.concatenate(sel_parts), np.concatenate(desc_parts)
        if cyclic:  # still climbing after MAX_DEPTH: a parent cycle; count each pair once
            pairs = np.unique(np.stack([sel, desc], axis=1), axis=0)
            sel, desc = pairs[:, 0], pairs[:, 1]
        return sel, desc

    @cached_property
    def _db_rows(self) -> np.ndarray:
        return np.flatnonzero(self.is_db).astype(_row_type(self.n))

    def count_stats(self, selected: np.ndarray) -> CountStats:
        """DB query counts under each selected row (`selected`: row numbers, sorted)."""
        k = len(selected)
        mask = np.zeros(self.n, bool)
        mask[selected] = True
        sel_rows, db_rows = self._ancestor_pairs(self._db_rows, mask, self._db_levels)
        pos = np.searchsorted(selected, sel_rows)
        db_queries = np.bincount(pos, minlength=k).astype(np.int64)
        repeated = np.zeros(k, np.int64)
        rep_code = np.full(k, -1, np.int64)
        per_statement: dict[str, dict[str, Any]] = {}
        if len(pos):
            codes, names = self.statements
            nc = max(len(names), 1)
            keys, counts = np.unique(pos * nc + codes[db_rows], return_counts=True)
            kpos, kcode = keys // nc, keys % nc
            np.maximum.at(repeated, kpos, counts)
            best = counts == repeated[kpos]
            rep_code[kpos[best]] = kcode[best]
            totals = np.bincount(kcode, weights=counts, minlength=nc)
            maxes = np.zeros(nc, np.int64)
            np.maximum.at(maxes, kcode, counts)
            reqs = np.bincount(kcode, minlength=nc)
            svc_codes, services = self.codes("service")
            row_codes = codes[db_rows]
            first_code, first_at = np.unique(row_codes, return_index=True)
            service_of = dict(zip(first_code.tolist(),
                                  svc_codes[db_rows[first_at]].tolist(), strict=True))
            for c in np.flatnonzero(reqs):
                per_statement[names[c]] = {"service": services[service_of[int(c)]],
                                           "mean": float(totals[c] / max(k, 1)),
                                           "max": int(maxes[c]), "requests": int(reqs[c])}
        return CountStats(db_queries, repeated, rep_code, per_statement)

    def span_counts(self, selected: np.ndarray) -> np.ndarray:
        """Spans in the subtree of each selected row (itself included).

        Counted while every span climbs to its ancestors, one level at a time, without
        keeping (selected, descendant) pairs: at 10M spans those would be several times
        the run's ids. A parent cycle (still climbing after MAX_DEPTH) would count a pair
        more than once: then the pairs are made and counted once each."""
        k = len(selected)
        mask = np.zeros(self.n, bool)
        mask[selected] = True
        counts = np.zeros(k, np.int64)
        cur = np.arange(self.n, dtype=_row_type(self.n))
        for _ in range(MAX_DEPTH):
            if len(cur) == 0:
                return counts
            hit = cur[mask[cur]]
            if len(hit):
                counts += np.bincount(np.searchsorted(selected, hit), minlength=k)
            cur = self.parent[cur]
            cur = cur[cur >= 0]
        if len(cur) == 0:
            return counts
        sel_rows, _ = self._ancestor_pairs(np.arange(self.n), mask)
        return np.bincount(np.searchsorted(selected, sel_rows), minlength=k)

    # -- selection -------------------------------------------------------------------------

    def select(self, selector: Selector) -> np.ndarray:
        """Rows matched by a `slo.judge.spec.Selector`, as sorted row numbers."""
        mask = np.ones(self.n, bool)
        if selector.service is not None:
            mask &= self.match("service", lambda v: v == selector.service)
        if selector.span is not None:
            mask &= self.match("name", lambda v: v == selector.span)
        if selector.span_regex is not None:
            rx = re.compile(selector.span_regex)
            mask &= self.match("name", lambda v: rx.search(v) is not None)
        if selector.kind is not None:
            mask &= self.match("kind", lambda v: v == selector.kind)
        if selector.root is not None:
            mask &= ~self.has_parent if selector.root else self.has_parent
        rows = np.flatnonzero(mask)
        if selector.attributes and len(rows):
            attrs = self.attributes(rows).to_pylist()
            want = dict(selector.attributes)
            ok = np.fromiter((_attrs_match(a, want) for a in attrs), bool, len(rows))
            rows = rows[ok]
        return rows

    # -- rows ------------------------------------------------------------------------------

    def attributes(self, rows: np.ndarray) -> pa.Array | pa.ChunkedArray:
        """The attributes JSON of these rows."""
        if self.source is None:
            return self.take("attributes", rows)
        return self.source.attributes_of(self.strings("trace_id", rows),
                                         self.take("span_id", rows))

    def attributes_matching(self, pattern: str, any_of: Sequence[str] = ()
                            ) -> pa.Array | pa.ChunkedArray:
        """The attributes JSON of the spans where the regular expression matches (`any_of`:
        substrings one of which every match contains, a pre-filter for the store's files)."""
        if self.source is not None:
            return self.source.attributes_matching(pattern, any_of)
        attrs = self.column("attributes")
        return pc.filter(attrs, pc.match_substring_regex(attrs, pattern))

    def trace_rows(self, trace_ids: Iterable[str], *, whole: bool = True
                   ) -> dict[str, list[dict[str, Any]]]:
        """All span rows of the given traces, grouped by trace id (one scan for all).

        `whole=False`: what attribution reads (ids, times, names, statuses, each span's DB
        statement as its only attribute), from the columns held here even when the store
        holds the rest. Traces read whole from the store cost their row groups' every column,
        and a report's attribution traces lie in nearly every row group (10M spans: 136
        traces read whole, 1.5 CPU-s of Parquet decoding, for the 18 a report showed)."""
        ids = sorted(set(trace_ids))
        if not ids or self.n == 0:
            return {}
        out: dict[str, list[dict[str, Any]]] = {t: [] for t in ids}
        if "attributes" in self.table.column_names:
            found = self.table.filter(pa.array(self.in_traces(ids))).to_pylist()
        elif whole and self.source is not None:  # whole rows, read for these traces only
            found = self.source.traces(ids, self._windows(ids)).to_pylist()
        else:
            found = self.rows(np.flatnonzero(self.in_traces(ids)), self.table.column_names)
            for row in found:
                stmt = row.get("db_statement")
                row["attributes"] = {DB_STATEMENT_ATTRS[0]: stmt} if stmt else {}
        for row in found:
            out[row["trace_id"]].append(row)
        return out

    def _windows(self, trace_ids: list[str]) -> list[tuple[int, int]]:
        """The (first, last) start of each trace's spans here: the store's files are in
        arrival order, so a read bounded by them skips nearly every row group."""
        rows = np.flatnonzero(self.in_traces(trace_ids))
        if not len(rows):
            return []
        code = self.trace_codes[rows]
        start = self.start_ns[rows]
        order = np.lexsort((start, code))
        code, start = code[order], start[order]
        first = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
        last = np.r_[first[1:] - 1, len(code) - 1]
        return list(zip(start[first].tolist(), start[last].tolist(), strict=True))

    def rows(self, rows: np.ndarray, columns: list[str] | None = None) -> list[dict[str, Any]]:
        """These rows as dicts of `columns` (default: every column)."""
        names = columns or self.table.column_names
        return pa.table({c: self.take(c, rows) for c in names}).to_pylist()


# (a weakref.ref; typed as its call so that `ref() is spans` does not make `spans` Optional)
_LAST: tuple[Callable[[], Any], RunIndex] | None = None


def index_for(spans: pa.Table, source: Any = None) -> RunIndex:
    """The RunIndex of a table, reused while the same table object is alive.

    `source`: where a table without the attributes column finds them (see `RunIndex`).

    `slo check --save-baseline` evaluates one run twice (check, then baseline): the parent
    resolution and statement normalization are then done once.
    """
    global _LAST
    if _LAST is not None and _LAST[0]() is spans:
        if source is not None and "attributes" not in spans.column_names:
            _LAST[1].source = source
        return _LAST[1]
    ix = RunIndex(spans, source)
    _LAST = (weakref.ref(spans), ix)
    return ix


def trace_mix(codes: np.ndarray) -> np.ndarray:
    """What a span id is mixed with to key it within its trace (`codes`: the trace's code per
    span): (code + 1) times an odd constant, a bijection of the code, so (trace, span id)
    pairs never share a key, whatever the ids look like."""
    mix = codes.astype(np.uint64)
    mix += np.uint64(1)
    mix *= np.uint64(0x9E3779B97F4A7C15)
    return mix


def take_rows(col: pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """`col` at these rows, one array, dictionary-encoded strings decoded, chunk by chunk
    (see `RunIndex.take`)."""
    rows = np.asarray(rows, np.int64)
    plain = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
    if len(rows) == 0 or col.num_chunks == 0:
        return pa.array([], plain)
    bounds = np.cumsum([0] + [len(c) for c in col.chunks])
    which = np.searchsorted(bounds, rows, side="right") - 1
    order = np.argsort(which, kind="stable")
    parts = []
    for c in np.unique(which).tolist():
        part = col.chunk(c).take(pa.array(rows[which == c] - bounds[c]))
        parts.append(part.cast(plain) if part.type != plain else part)
    merged = pa.concat_arrays(parts)  # grouped by chunk: put back in the order asked
    return merged.take(pa.array(np.argsort(order)))


def _row_type(n: int) -> type[np.signedinteger[Any]]:
    """The narrowest signed integer type that numbers `n` rows (and -1): int32 up to 2^31
    rows, half the memory of int64 for each array of rows the tree walks hold."""
    return np.int32 if n < 2**31 - 1 else np.int64


def _dictionary_codes(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """(codes, values) of a dictionary-encoded column, as `dictionary_encode` makes them from
    the plain strings: values in order of first appearance (what ties in reports follow),
    values no row uses dropped (a Parquet dictionary covers a whole file), nulls -1."""
    col = col.unify_dictionaries()
    values = col.chunk(0).dictionary.to_pylist() if col.num_chunks else []
    idx = _indices(col)
    # the codes in order of first appearance: Arrow's hash table keeps insertion order
    # (np.minimum.at over every row did the same at 0.3 s per column of 10M spans)
    order = pc.unique(pa.array(idx)).to_numpy(zero_copy_only=False)
    order = order[order >= 0]  # -1: nulls
    if len(order) == len(values) and (order == np.arange(len(order))).all():
        return idx, values  # (a store read's dictionary is in that order already: no copy)
    remap = np.full(len(values) + 1, -1, np.int32)
    remap[order] = np.arange(len(order), dtype=np.int32)
    return remap[idx], [values[i] for i in order]


def _indices(col: pa.ChunkedArray) -> np.ndarray:
    """The int32 codes of a dictionary column whose chunks share one dictionary, nulls -1:
    of a column in one chunk without nulls (`SpanStore.read(contiguous=True)`), its own buffer."""
    parts = [(c.indices.fill_null(-1) if c.null_count else c.indices)
             .to_numpy(zero_copy_only=False) for c in col.chunks]
    if not parts:
        return np.zeros(0, np.int32)
    idx = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return idx.astype(np.int32, copy=False)


def _attrs_match(raw: str, want: dict[str, str]) -> bool:
    try:
        attrs = json.loads(raw or "{}")
    except ValueError:
        return False
    for k, v in want.items():
        got = attrs.get(k, attrs.get(SYNONYMS.get(k, ""), None))
        if got is None:
            return False
        if isinstance(got, bool):
            got = "true" if got else "false"
        if str(got) != v:
            return False
    return True
