"""The vectorized run index against a plain recursive walk, on random span forests."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from slo.ingest.spans import make_row, table_from_rows
from slo.judge.sqlnorm import normalize
from slo.judge.tree import RunIndex

STATEMENTS = ["SELECT a FROM t WHERE id = 1", "SELECT a FROM t WHERE id = 2",
              "INSERT INTO t VALUES (1)", ""]


@st.composite
def forests(draw):  # type: ignore[no-untyped-def]
    n_traces = draw(st.integers(1, 4))
    rows = []
    for t in range(n_traces):
        n = draw(st.integers(1, 25))
        for i in range(n):
            parent = draw(st.integers(-1, i - 1)) if i else -1
            lost = draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())
            kind = draw(st.sampled_from(["db", "cache", "plain"]))
            stmt = draw(st.sampled_from(STATEMENTS))
            attrs = {}
            if kind == "db":
                attrs = {"db.system": "sqlite", "db.statement": stmt} if stmt else \
                    {"db.system": "sqlite"}
            elif kind == "cache":
                attrs = {"db.system": "redis", "db.statement": "GET k"}
            parent_id = "" if parent < 0 else f"{t:08x}{parent:08x}"
            if lost and parent_id:
                parent_id = "ffffffffffffffff"  # a parent that never arrived
            rows.append(make_row(
                trace_id=f"{t:032x}", span_id=f"{t:08x}{i:08x}", parent_span_id=parent_id,
                name=draw(st.sampled_from(["GET /a", "SELECT", "GET"])), start_ns=i,
                end_ns=i + 1, attributes=attrs, resource={"service.name": "s"}))
    selected = draw(st.lists(st.integers(0, len(rows) - 1), unique=True, max_size=len(rows)))
    return rows, sorted(selected)


def naive(rows: list[dict], selected: list[int]) -> tuple[list[int], list[int], list[int]]:
    index = {(r["trace_id"], r["span_id"]): i for i, r in enumerate(rows)}
    children: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        p = index.get((r["trace_id"], r["parent_span_id"]))
        if p is not None:
            children.setdefault(p, []).append(i)

    def subtree(i: int) -> list[int]:
        out = [i]
        for c in children.get(i, []):
            out += subtree(c)
        return out

    def is_db(r: dict) -> bool:
        return (r["db_system"] or r["db_statement"]) != "" and r["db_system"] != "redis"

    dbq, rep, spans = [], [], []
    for s in selected:
        sub = subtree(s)
        db = [rows[i] for i in sub if is_db(rows[i])]
        dbq.append(len(db))
        counts = Counter(normalize(r["db_statement"]) if r["db_statement"] else r["name"].upper()
                         for r in db)
        rep.append(max(counts.values(), default=0))
        spans.append(len(sub))
    return dbq, rep, spans


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(forests())
def test_index_matches_a_recursive_walk(case) -> None:  # type: ignore[no-untyped-def]
    rows, selected = case
    ix = RunIndex(table_from_rows(rows))
    sel = np.array(selected, np.int64)
    stats = ix.count_stats(sel)
    dbq, rep, spans = naive(rows, selected)
    assert stats.db_queries.tolist() == dbq
    assert stats.repeated.tolist() == rep
    assert ix.span_counts(sel).tolist() == spans



def test_codes_of_a_dictionary_column_are_those_of_its_strings():
    """A column read dictionary-encoded from Parquet (chunks with dictionaries of their own,
    values no row uses, nulls) gives the codes and values the plain strings give: values in
    order of first appearance, which ties in reports follow."""
    import pyarrow as pa

    chunks = [pa.DictionaryArray.from_arrays(pa.array([1, 0, None, 1], pa.int32()),
                                             pa.array(["a", "b"])),
              pa.DictionaryArray.from_arrays(pa.array([2, 1], pa.int32()),
                                             pa.array(["unused", "a", "c"])),
              pa.array(["d", "c"]).dictionary_encode()]
    coded = pa.table({"name": pa.chunked_array(chunks)})
    plain = pa.table({"name": pa.chunked_array([c.cast(pa.string()) for c in chunks])})
    got, want = RunIndex(coded).codes("name"), RunIndex(plain).codes("name")
    assert got[1] == want[1] == ["b", "a", "c", "d"]
    assert np.array_equal(got[0], want[0])
