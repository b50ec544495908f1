"""Span ids packed as uint64 for the check (8 bytes an id instead of 20) read back as the
same strings, and ids of other shapes are never packed (nor half-packed across files)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from slo.ingest.spanids import hex16, hex64, packed
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


def test_packing_takes_either_case_and_refuses_any_other_byte():
    """Hex digits of either case are packed (what `bytes.fromhex` took); a 16-character id
    with any other byte (a letter past f, punctuation next to the digits in ASCII, a space,
    a control byte, a non-ASCII letter) keeps the whole column strings."""
    ids = packed(pa.chunked_array([["00F067AA0BA902B7", "00f067aa0ba902b7", "AbCdEf0123456789"]]))
    assert ids is not None and ids.null_count == 0
    assert ids.to_pylist() == [0x00F067AA0BA902B7] * 2 + [0xABCDEF0123456789]
    assert hex16(ids).to_pylist()[2] == "abcdef0123456789"  # (read back lowercase)
    for bad in ("g", "G", ":", "/", "@", "`", " ", "\t", "\x10", "\x7f", "\x00"):
        for at in (0, 7, 15):
            foreign = "0123456789abcdef"[:at] + bad + "0123456789abcdef"[at + 1:]
            col = pa.chunked_array([["0123456789abcdef", foreign]])
            assert packed(col) is None and hex64(col) is None, (bad, at)
    for foreign in ("0123456789abcdé", "0123456789abcdeé"):  # 15 and 16 characters
        assert packed(pa.chunked_array([[foreign]])) is None and hex64(pa.array([foreign])) is None


def test_empty_and_null_ids_pack_as_null_in_any_chunk_and_slice():
    """"" and null are "no id" (null when packed, 0 from `hex64`) wherever they sit: first,
    last, whole chunks of them, chunks that are slices of larger arrays (their strings start
    inside the buffer), large strings; a column of no rows packs to no rows."""
    full = pa.array(["zz", "", "ffffffffffffffff", None, "0000000000000001", "", "x" * 17])
    col = pa.chunked_array([full.slice(1, 4), pa.array(["", None]), pa.array([], pa.string()),
                            pa.array(["", "00000000000000aB"], pa.large_string()).cast(pa.string())])
    want = [None, 2**64 - 1, None, 1, None, None, None, 0xAB]
    ids = packed(col)
    assert ids is not None and ids.num_chunks == 1 and ids.to_pylist() == want
    assert hex64(col).tolist() == [0 if v is None else v for v in want]
    assert hex64(full.slice(1, 4)).tolist() == [0, 2**64 - 1, 0, 1]
    assert packed(pa.chunked_array([pa.array(["", None, ""])])).to_pylist() == [None] * 3
    assert packed(pa.chunked_array([full.slice(1, 5)])) is not None
    assert packed(pa.chunked_array([full.slice(0, 2)])) is None  # "zz"
    assert packed(pa.chunked_array([full.slice(5, 2)])) is None  # 17 characters
    for short in (["0123abcd", "0123456789abcdef"], ["0123456789abcde", "f"]):  # 16 bytes in all
        assert packed(pa.chunked_array([short])) is None, short
    large = pa.chunked_array([pa.array(["0000000000000010", None], pa.large_string())])
    assert packed(large).to_pylist() == [16, None]
    empty = packed(pa.chunked_array([], pa.string()))
    assert empty is not None and empty.type == pa.uint64() and len(empty) == 0


def test_hex64_reads_short_hex_ids_as_if_padded_but_packing_refuses_them():
    """`hex64` (the parent lookup of unpacked columns) reads a shorter hex id as if "0"s
    followed it, as it always has; `packed` takes whole 16-digit ids only."""
    col = pa.chunked_array([["abc", "", "0123456789abcdef", None]])
    assert hex64(col).tolist() == [0xABC0000000000000, 0, 0x0123456789ABCDEF, 0]
    assert packed(col) is None
    assert hex64(pa.chunked_array([["abcx"]])) is None


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
