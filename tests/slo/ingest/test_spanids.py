"""Span ids packed as uint64 for the check (8 bytes an id instead of 20) read back as the
same strings, and ids of other shapes are never packed (nor half-packed across files)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from slo.ingest.spanids import hex16, packed
from slo.ingest.spans import make_row, table_from_rows
from slo.ingest.store import DICTIONARY_COLUMNS, SpanStore, StoreWriter
from slo.judge.tree import RunIndex


def test_packed_ids_read_back_as_the_strings_with_no_parent_null():
    col = pa.chunked_array([["00f067aa0ba902b7", ""], [None, "ffffffffffffffff"]])
    ids = packed(col)
    assert ids is not None and ids.type == pa.uint64() and ids.num_chunks == 1
    assert ids.null_count == 2  # "" and null: no parent
    assert ids.to_pylist()[0] == 0x00F067AA0BA902B7 and ids.to_pylist()[3] == 2**64 - 1
    assert hex16(ids).to_pylist() == ["00f067aa0ba902b7", "", "", "ffffffffffffffff"]
    for foreign in (["abc"], ["00f067aa0ba902b7ff"], ["zzzzzzzzzzzzzzzz"], ["00f067aa0ba9 2b7"]):
        assert packed(pa.chunked_array([foreign])) is None, foreign


def _spans(run_id, n, ids=lambda i: f"{i + 1:016x}", parent=lambda i: "" if i % 5 == 0 else f"{i:016x}"):
    return table_from_rows(
        make_row(trace_id=f"{i // 5 + 1:032x}", span_id=ids(i), parent_span_id=parent(i),
                 name=f"s{i % 3}", service="svc", start_ns=1_000_000 + i, end_ns=2_000_000 + i,
                 run_id=run_id)
        for i in range(n))


def test_a_store_read_packs_ids_only_when_every_file_allows_it(tmp_path):
    w = StoreWriter(tmp_path)
    w.append(_spans("hex", 20))
    w.append(_spans("hex", 10, ids=lambda i: f"{i + 100:016x}"))  # a second segment
    w.append(_spans("mixed", 10))
    w.close()
    w = StoreWriter(tmp_path)  # another segment, from a foreign tool
    w.append(_spans("mixed", 10, ids=lambda i: f"span-{i}", parent=lambda i: f"span-{i - 1}"))
    w.close()
    s = SpanStore(tmp_path)
    for run in ("hex", "mixed"):
        plain = s.read(run)
        ids = s.read(run, packed_ids=True, dictionary=DICTIONARY_COLUMNS, contiguous=True)
        want = pa.uint64() if run == "hex" else pa.string()
        for name in ("span_id", "parent_span_id"):
            assert ids.schema.field(name).type == want, (run, name)
            got = hex16(ids[name]) if want == pa.uint64() else ids[name].combine_chunks()
            assert got.to_pylist() == plain[name].to_pylist(), (run, name)
        # the index reads both shapes alike
        a, b = RunIndex(plain), RunIndex(ids)
        assert (a.parent == b.parent).all() and (a.has_parent == b.has_parent).all()
        rows = np.arange(plain.num_rows)[::3]
        assert a.take("span_id", rows).to_pylist() == b.take("span_id", rows).to_pylist()
        assert a.take("parent_span_id", rows).to_pylist() == b.take("parent_span_id", rows).to_pylist()


def test_a_contiguous_read_gives_the_index_its_columns_without_copies(tmp_path):
    for k in range(3):  # a file each
        w = StoreWriter(tmp_path)
        w.append(_spans("r", 12, ids=lambda i, k=k: f"{k * 100 + i + 1:016x}"))
        w.close()
    t = SpanStore(tmp_path).read("r", dictionary=DICTIONARY_COLUMNS, contiguous=True)
    assert t["start_ns"].num_chunks == 1 and t["name"].num_chunks == 1
    assert t["span_id"].num_chunks == 3  # plain strings stay a chunk per file
    ix = RunIndex(t)
    codes, values = ix.codes("name")
    assert values == ["s0", "s1", "s2"] and codes.tolist() == [i % 3 for i in range(12)] * 3
    assert np.shares_memory(codes, np.frombuffer(t["name"].chunk(0).indices.buffers()[1], np.int32))
    assert np.shares_memory(ix.start_ns, np.frombuffer(t["start_ns"].chunk(0).buffers()[1], np.int64))
