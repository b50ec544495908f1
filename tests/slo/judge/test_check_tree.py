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


def _parents(ix: RunIndex, rows: list[dict]) -> list[tuple[str, str] | None]:
    """(trace id, span id) of each row's resolved parent row."""
    out = []
    for p in ix.parent.tolist():
        out.append(None if p < 0 else (rows[p]["trace_id"], rows[p]["span_id"]))
    return out


def _dictionary_encoded(rows: list[dict]):  # type: ignore[no-untyped-def]
    """The table as `SpanStore.read(dictionary=...)` gives it: trace ids dictionary-encoded."""
    import pyarrow as pa

    t = table_from_rows(rows)
    i = t.schema.get_field_index("trace_id")
    return t.set_column(i, "trace_id", pa.chunked_array(
        [c.dictionary_encode() for c in t.column("trace_id").chunks]))


def test_parents_stay_in_their_trace_when_trace_ids_share_their_low_half():
    """Copies of one trace whose ids differ only in their high half (as a tool that pads or
    prefixes ids makes them), with the same span ids: each span's parent is in its own
    trace. Keyed on the trace id's low 64 bits, every copy's spans found the first copy's."""
    rows = []
    for copy in range(3):
        tid = f"{copy:04x}" + "ab" * 14
        rows += [make_row(trace_id=tid, span_id="00000000000000a1", name="GET /a", start_ns=1, end_ns=2),
                 make_row(trace_id=tid, span_id="00000000000000b2",
                          parent_span_id="00000000000000a1", name="SELECT", start_ns=1, end_ns=2)]
    want = [None if r["parent_span_id"] == "" else (r["trace_id"], r["parent_span_id"])
            for r in rows]
    assert _parents(RunIndex(table_from_rows(rows)), rows) == want
    assert _parents(RunIndex(_dictionary_encoded(rows)), rows) == want


def test_a_key_collision_between_traces_still_finds_the_true_parent():
    """Two (trace, span) pairs built to share the 64-bit key of the fast path: the match is
    verified and the exact join answers (a parent in the other trace otherwise)."""
    golden = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    a = 0x00000000000000a1
    b = a ^ ((1 * golden) & mask) ^ ((2 * golden) & mask)  # trace codes 0 and 1
    rows = [make_row(trace_id="1" * 32, span_id=f"{a:016x}", name="GET /a", start_ns=1, end_ns=2),
            make_row(trace_id="2" * 32, span_id=f"{b:016x}", name="GET /b", start_ns=1, end_ns=2),
            make_row(trace_id="2" * 32, span_id="00000000000000c3", parent_span_id=f"{b:016x}",
                     name="SELECT", start_ns=1, end_ns=2),
            make_row(trace_id="2" * 32, span_id="00000000000000c4", parent_span_id=f"{a:016x}",
                     name="SELECT", start_ns=1, end_ns=2),
            make_row(trace_id="1" * 32, span_id="00000000000000d5", parent_span_id=f"{a:016x}",
                     name="SELECT", start_ns=1, end_ns=2)]
    got = _parents(RunIndex(table_from_rows(rows)), rows)
    # both lookups of the shared key find one row first: unverified, one is in the wrong trace
    assert got == [None, None, ("2" * 32, f"{b:016x}"), None, ("1" * 32, f"{a:016x}")]


def test_take_across_chunks_keeps_the_order_asked_and_decodes_dictionaries():
    """Rows asked out of order, across chunks whose dictionaries differ, some repeated, with
    nulls: the values the plain strings give at those rows, in that order."""
    import pyarrow as pa

    chunks = [pa.DictionaryArray.from_arrays(pa.array([1, 0, None, 1], pa.int32()),
                                             pa.array(["a", "b"])),
              pa.DictionaryArray.from_arrays(pa.array([2, 1], pa.int32()),
                                             pa.array(["unused", "a", "c"])),
              pa.array(["d", "c", "e"]).dictionary_encode()]
    plain = [c.cast(pa.string()) for c in chunks]
    coded = RunIndex(pa.table({"name": pa.chunked_array(chunks),
                               "n": pa.chunked_array([pa.array(range(0, 4)),
                                                      pa.array(range(4, 6)),
                                                      pa.array(range(6, 9))])}))
    rows = np.array([8, 0, 5, 2, 7, 0, 4, 1])
    want = pa.chunked_array(plain).take(pa.array(rows)).to_pylist()
    assert coded.take("name", rows).to_pylist() == want == \
        ["e", "b", "a", None, "c", "b", "c", "a"]
    assert coded.take("n", rows).to_pylist() == rows.tolist()
    assert coded.rows(rows[:2], ["name", "n"]) == [{"name": "e", "n": 8}, {"name": "b", "n": 0}]
    assert coded.take("name", np.array([], np.int64)).to_pylist() == []


def test_parents_whose_ids_differ_only_in_the_bits_the_sort_drops():
    """The sorted keys carry the row number in their low bits, so span ids that differ only
    there share a shortened key: each lookup walks past the wrong ones to its own parent."""
    tid = "7" * 32
    rows = [make_row(trace_id=tid, span_id=f"{0xa0 + i:016x}", name=f"s{i}", start_ns=1, end_ns=2)
            for i in range(8)]
    rows += [make_row(trace_id=tid, span_id=f"{0xf0 + i:016x}", parent_span_id=f"{0xa0 + 7 - i:016x}",
                      name="child", start_ns=1, end_ns=2) for i in range(8)]
    want = [None if r["parent_span_id"] == "" else (tid, r["parent_span_id"]) for r in rows]
    assert _parents(RunIndex(table_from_rows(rows)), rows) == want


def test_a_span_without_a_value_matches_no_selector():
    """A null's code is -1: it must not read the last distinct value's answer."""
    import pyarrow as pa

    from slo.judge.spec import Selector

    rows = [make_row(trace_id=f"{i:032x}", span_id=f"{i + 1:016x}", name=name, start_ns=i,
                     end_ns=i + 1, service=svc)
            for i, (svc, name) in enumerate([("a", "GET /x"), ("b", "GET /y"), ("c", "GET /z")])]
    t = table_from_rows(rows)
    for col in ("service", "name"):
        vals = t[col].to_pylist()
        t = t.set_column(t.schema.get_field_index(col), col, pa.array([vals[0], None, vals[2]]))
    ix = RunIndex(t)
    assert ix.select(Selector(service="c")).tolist() == [2]  # one value: a compare
    assert ix.select(Selector(span_regex="^GET /[xz]$")).tolist() == [0, 2]  # several: a gather
    assert ix.select(Selector(span_regex="^GET")).tolist() == [0, 2]


def test_a_span_without_a_db_system_or_statement_is_no_query():
    import pyarrow as pa

    rows = [make_row(trace_id="1" * 32, span_id=f"{i + 1:016x}", name=n, start_ns=i,
                     end_ns=i + 1, service="svc", attributes=a)
            for i, (n, a) in enumerate([("GET /", {}), ("SELECT", {"db.system": "sqlite",
                                                                    "db.statement": "SELECT 1"})])]
    t = table_from_rows(rows)
    for col in ("db_system", "db_statement"):
        t = t.set_column(t.schema.get_field_index(col), col,
                         pa.array([None, t[col][1].as_py()], pa.string()))
    assert RunIndex(t).is_db.tolist() == [False, True]
