"""The span store: WAL + Parquet, torn tails, recovery, readers during writes and compaction."""

from __future__ import annotations

import threading

import duckdb
import pyarrow.parquet as pq
import pytest

from slo.errors import SourceError
from slo.ingest.spans import SCHEMA, make_row, table_from_rows
from slo.ingest.store import SpanStore, StoreWriter


def _table(run_id, n, start=0, trace_every=10, tag="a"):
    return table_from_rows(
        make_row(trace_id=f"{(start + i) // trace_every + 1:032x}", span_id=f"{start + i + 1:016x}",
                 name=f"{tag}{i}", start_ns=1_000_000 + start + i, end_ns=2_000_000 + start + i,
                 run_id=run_id, attributes={"i": start + i})
        for i in range(n)
    )


def test_write_read_runs_and_compaction(tmp_path):
    w = StoreWriter(tmp_path, idle_seconds=0)
    w.append(_table("r1", 30))
    w.append(_table("r2", 5, start=100))
    s = SpanStore(tmp_path)
    # visible before compaction (WAL)
    assert s.read("r1").num_rows == 30
    assert s.latest_run_id() == "r2"
    w.maintain()  # idle -> compacted into per-run Parquet
    assert not list((tmp_path / "wal").glob("*.arrows"))
    files = sorted(p.parent.name for p in (tmp_path / "runs").glob("*/*.parquet"))
    assert files == ["run=r1", "run=r2"]
    runs = {r.run_id: r for r in s.runs()}
    assert (runs["r1"].spans, runs["r1"].traces) == (30, 3)
    assert (runs["r2"].start_ns, runs["r2"].end_ns) == (1_000_100, 2_000_104)
    t = s.read(["r1", "r2"], start_ns=1_000_010, end_ns=1_000_020)
    assert t.num_rows == 10 and t.schema == SCHEMA
    assert s.read(None).num_rows == 5  # latest run
    # the Parquet is plain: DuckDB reads it as it is
    con = duckdb.connect()
    n = con.execute(f"select count(*) from read_parquet('{tmp_path}/runs/*/*.parquet')").fetchone()
    assert n == (35,)
    con.close()
    assert s.sql("select count(*) as n from spans where name like 'a1%'", "r1")["n"][0].as_py() == 11
    w.close()


def test_unknown_run_and_missing_store_are_source_errors(tmp_path):
    with pytest.raises(SourceError, match="no span store"):
        SpanStore(tmp_path / "nope").runs()
    w = StoreWriter(tmp_path)
    with pytest.raises(SourceError, match="no spans"):
        SpanStore(tmp_path).read()
    w.append(_table("known", 2))
    with pytest.raises(SourceError, match="'known'"):
        SpanStore(tmp_path).read("other")
    w.close()


def _torn_segment(tmp_path):
    """A writer whose WAL segment holds 20 spans of run "r" and then a partial third batch,
    as a kill -9 mid-write leaves it: (writer, segment)."""
    w = StoreWriter(tmp_path)
    w.append(_table("r", 10))
    w.append(_table("r", 10, start=10))
    seg = next((tmp_path / "wal").glob("*.arrows"))
    with open(seg, "ab") as f:
        f.write(b"\xff\xff\xff\xff\x10\x01\x00\x00garbage")
    return w, seg


def test_torn_tail_is_ignored_and_recovered_exactly_once(tmp_path):
    w, seg = _torn_segment(tmp_path)
    assert SpanStore(tmp_path).read("r").num_rows == 20
    with pytest.raises(SourceError, match="already being written"):
        StoreWriter(tmp_path)  # one writer per store
    w._lock_file.close()  # the writer dies (the kernel drops its lock)
    # a new writer (restart) compacts the leftover segment, nothing lost or doubled
    w2 = StoreWriter(tmp_path)
    assert not list((tmp_path / "wal").glob("*.arrows"))
    w2.append(_table("r", 5, start=20))
    t = SpanStore(tmp_path).read("r")
    assert t.num_rows == 25 and len(set(t["span_id"].to_pylist())) == 25
    w2.close()
    # a crash after writing Parquet but before deleting the WAL: compaction again, no dupes
    w3 = StoreWriter(tmp_path)
    w3.append(_table("r", 3, start=40))
    seg = next((tmp_path / "wal").glob("*.arrows"))
    keep = seg.read_bytes()
    w3.close()
    seg.write_bytes(keep)
    assert SpanStore(tmp_path).read("r").num_rows == 28
    StoreWriter(tmp_path).close()
    assert SpanStore(tmp_path).read("r").num_rows == 28


def test_compaction_reads_segments_mapped_torn_and_empty_ones_too(tmp_path, monkeypatch):
    """Compaction maps a closed segment (no copy of every batch into new buffers) and sees
    exactly what a copying read sees: whole batches, a torn tail ignored, an empty file
    (a segment opened, nothing written yet) empty."""
    import pyarrow as pa

    from slo.ingest import store

    w, seg = _torn_segment(tmp_path)
    empty = seg.with_name("seg-000000000099.arrows")
    empty.touch()
    for p in (seg, empty):
        assert [b.num_rows for b in store.iter_segment(p, mapped=True)] == \
            [b.num_rows for b in store.iter_segment(p)]
    assert [b.num_rows for b in store.iter_segment(seg, mapped=True)] == [10, 10]
    mapped: list[str] = []
    real_map = pa.memory_map
    monkeypatch.setattr(pa, "memory_map", lambda path, *a: mapped.append(path) or
                        real_map(path, *a))
    w.close()  # compacts its segment
    StoreWriter(tmp_path).close()  # a restart compacts the leftover empty one
    assert sorted(mapped) == sorted([str(seg), str(empty)])
    t = SpanStore(tmp_path).read("r")
    assert t.num_rows == 20 and len(set(t["span_id"].to_pylist())) == 20


def test_a_segment_is_closed_once_its_file_reaches_segment_bytes(tmp_path):
    """Rotation measures the segment file as written (IPC framing, padding and schema
    included), not the tables' in-memory size."""
    probe = StoreWriter(tmp_path / "probe", segment_bytes=1 << 30)
    probe.append(_table("r", 50))
    probe.append(_table("r", 50, start=50))
    size = next((tmp_path / "probe" / "wal").glob("*.arrows")).stat().st_size
    probe.close()
    w = StoreWriter(tmp_path / "s", segment_bytes=size)
    w.append(_table("r", 50))
    w.append(_table("r", 50, start=50))  # the file reaches `size`: closed
    w.append(_table("r", 50, start=100))  # a new segment
    segs = sorted((tmp_path / "s" / "wal").glob("*.arrows"))
    assert len(segs) == 2 and segs[0].stat().st_size >= size
    assert SpanStore(tmp_path / "s").read("r").num_rows == 150
    w.close()


def test_reader_while_writer_writes_and_compacts(tmp_path):
    w = StoreWriter(tmp_path, segment_bytes=20_000, idle_seconds=0.0)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader():
        s = SpanStore(tmp_path)
        while not stop.is_set():
            try:
                t = s.read("r") if s.runs() else None
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return
            if t is not None:
                ids = t["span_id"].to_pylist()
                assert len(ids) == len(set(ids)), "a span seen twice"
                seen.append(len(ids))

    th = threading.Thread(target=reader)
    th.start()
    total = 0
    for i in range(40):
        w.append(_table("r", 50, start=i * 50))
        total += 50
        if i % 5 == 0:
            w.maintain()
    w.close()
    stop.set()
    th.join()
    assert not errors, errors
    assert seen and seen == sorted(seen), "a reader saw spans disappear"
    assert SpanStore(tmp_path).read("r").num_rows == total
    assert sum(pq.read_metadata(p).num_rows for p in (tmp_path / "runs").glob("*/*.parquet")) == total


def test_run_meta_roundtrip_and_odd_run_ids(tmp_path):
    w = StoreWriter(tmp_path)
    odd = "../x/" + "é" * 200
    w.append(_table(odd, 3))
    w.append(_table("", 2, start=10))
    w.close()
    s = SpanStore(tmp_path)
    assert s.read(odd).num_rows == 3
    assert s.latest_run_id() == odd  # a named run wins over spans without a run id
    assert s.read("").num_rows == 2
    s.write_run_meta(odd, {"users": 20, "start": "2026-01-01"})
    assert s.read_run_meta(odd) == {"users": 20, "start": "2026-01-01"}
    assert s.read_run_meta("nothing") is None


def test_failed_append_never_hides_later_spans(tmp_path):
    w = StoreWriter(tmp_path)
    w.append(_table("r", 4))

    class Torn:  # a write that fails half way (disk full): a torn batch in the segment
        def __init__(self, real, f):
            self.real, self.f = real, f

        def write_table(self, table):
            self.f.write(b"\xff\xff\xff\xff\x00\x10\x00\x00half a batch")
            raise OSError("No space left on device")

        def close(self):
            self.real.close()

    w._writer = Torn(w._writer, w._file)
    with pytest.raises(OSError):
        w.append(_table("r", 3, start=100))
    w.append(_table("r", 5, start=200))  # acknowledged after the failure: must stay visible
    assert SpanStore(tmp_path).read("r").num_rows == 9
    w.close()
    t = SpanStore(tmp_path).read("r")
    assert t.num_rows == 9 and not list((tmp_path / "wal").glob("*.arrows"))


def test_unlabelled_spans_join_the_run_of_their_trace(tmp_path):
    """Zero-code-instrumented services copy no run id: their spans land in the unlabelled run
    and belong to the run whose client span shares their trace, whatever arrived first."""
    w = StoreWriter(tmp_path)

    def row(trace: int, span: int, run_id: str):
        return make_row(trace_id=f"{trace:032x}", span_id=f"{span:016x}", name=f"s{span}",
                        start_ns=1_000 + span, end_ns=2_000 + span, run_id=run_id)

    # service spans first (unlabelled), interleaved in time across two runs, then the clients
    w.append(table_from_rows([row(1, 11, ""), row(2, 21, ""), row(1, 12, ""), row(3, 31, "")]))
    w.append(table_from_rows([row(1, 10, "base"), row(2, 20, "cand")]))
    s = SpanStore(tmp_path)
    base = s.read("base")
    assert sorted(base["span_id"].to_pylist()) == [f"{i:016x}" for i in (10, 11, 12)]
    assert set(base["run_id"].to_pylist()) == {"base"}
    cand = s.read(["base", "cand"])
    by_run = {r: sorted(s for s, rr in zip(cand["span_id"].to_pylist(), cand["run_id"].to_pylist(),
                                           strict=True) if rr == r) for r in ("base", "cand")}
    assert by_run["cand"] == [f"{i:016x}" for i in (20, 21)]
    assert s.read("base", adopt=False).num_rows == 1
    # trace 3 has no labelled span: it stays in the unlabelled run only
    assert s.read("").num_rows == 4
    w.close()


def test_the_checks_read_adopts_alike_with_dictionaries_and_packed_ids(tmp_path):
    """The check's read (run_id and the other few-valued columns dictionary-encoded, ids
    packed, a chunk a column) adopts the same unlabelled spans as a plain read, labelled alike."""
    from slo.ingest.spanids import hex16
    from slo.ingest.store import DICTIONARY_COLUMNS

    w = StoreWriter(tmp_path)
    w.append(_table("", 4, start=0, trace_every=2, tag="u"))  # unlabelled, traces 1 and 2
    w.append(_table("r", 3, start=2, trace_every=2, tag="r"))  # traces 2 and 3
    w.close()
    s = SpanStore(tmp_path)
    plain = s.read("r")
    coded = s.read("r", dictionary=DICTIONARY_COLUMNS, packed_ids=True, contiguous=True)
    assert str(coded.schema.field("run_id").type).startswith("dictionary<values=string")
    assert coded["run_id"].num_chunks == 1
    assert coded["run_id"].to_pylist() == plain["run_id"].to_pylist() == ["r"] * 5
    assert hex16(coded["span_id"]).to_pylist() == plain["span_id"].to_pylist()
    assert coded["name"].to_pylist() == plain["name"].to_pylist()
    assert sorted(plain["name"].to_pylist()) == ["r0", "r1", "r2", "u2", "u3"]


def _commit_all(w, tables):
    """`w.commit` each table from its own thread; returns the exception (or None) of each."""
    results: list[BaseException | None] = [None] * len(tables)

    def one(i):
        try:
            w.commit(tables[i])
        except BaseException as e:  # noqa: BLE001 - returned to the test
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(tables))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_group_commit_writes_concurrent_tables_together(tmp_path, monkeypatch):
    """Callers that arrive while a write is under way share the next write (one flush)."""
    w = StoreWriter(tmp_path)
    groups: list[int] = []
    first = threading.Event()
    real = w.append_many

    def slow_append(tables):
        groups.append(len(tables))
        if not first.is_set():  # hold the first write until the others are queued
            first.set()
            deadline = threading.Event()
            while len(w._commit_queue) < 7 and not deadline.wait(0.01):
                pass
        real(tables)

    monkeypatch.setattr(w, "append_many", slow_append)
    results = _commit_all(w, [_table("r", 10, start=i * 10) for i in range(8)])
    assert results == [None] * 8
    assert groups == [1, 7]  # the first alone, the seven that waited in one write
    assert SpanStore(tmp_path).read("r").num_rows == 80  # visible before any compaction
    w.close()
    assert SpanStore(tmp_path).read("r").num_rows == 80


def test_group_commit_failure_reaches_every_caller_of_the_group(tmp_path, monkeypatch):
    """A failed write is an error for each request in it (none may be acknowledged), and
    the next group starts a fresh segment that works."""
    w = StoreWriter(tmp_path)
    calls = []

    def broken(tables):
        calls.append(len(tables))
        wait = threading.Event()
        while len(calls) == 1 and len(w._commit_queue) < 3 and not wait.wait(0.01):
            pass  # the first write fails only once the other three wait for the next
        raise OSError("disk full")

    monkeypatch.setattr(w, "append_many", broken)
    results = _commit_all(w, [_table("r", 5, start=i * 5) for i in range(4)])
    assert all(isinstance(e, OSError) and "disk full" in str(e) for e in results), results
    assert calls == [1, 3]
    monkeypatch.undo()
    w.commit(_table("r", 3, start=100))
    w.close()
    assert SpanStore(tmp_path).read("r").num_rows == 3


def test_read_only_some_columns(tmp_path):
    """A stage reads the columns it needs, in its order, with the same rows (adopted spans of
    unlabelled services included) as a read of every column; an unknown column is named."""
    w = StoreWriter(tmp_path)
    w.append(_table("", 4, start=0, trace_every=2, tag="u"))  # unlabelled, traces 1 and 2
    w.append(_table("r", 3, start=2, trace_every=2, tag="r"))  # traces 2 and 3
    w.close()
    s = SpanStore(tmp_path)
    whole = s.read("r", start_ns=1_000_001)
    some = s.read("r", start_ns=1_000_001, columns=["name", "end_ns"])
    assert some.column_names == ["name", "end_ns"]
    assert sorted(some["name"].to_pylist()) == sorted(whole["name"].to_pylist())
    assert sorted(some["name"].to_pylist()) == ["r0", "r1", "r2", "u2", "u3"]
    with pytest.raises(SourceError, match="no span column"):
        s.read("r", columns=["name", "bogus"])


def test_dictionary_columns_read_as_stored_and_older_files_read_too(tmp_path):
    """Columns read dictionary-encoded hold the strings a plain read holds; a segment written
    before a column existed (here: without `http_route`) reads with that column null."""
    from slo.ingest.store import DICTIONARY_COLUMNS

    w = StoreWriter(tmp_path)
    w.append(_table("r", 6, tag="n"))
    w.close()
    s = SpanStore(tmp_path)
    plain = s.read("r")
    coded = s.read("r", dictionary=DICTIONARY_COLUMNS)
    assert str(coded.schema.field("name").type) == "dictionary<values=string, indices=int32, ordered=0>"
    assert coded["name"].cast(plain.schema.field("name").type).to_pylist() == plain["name"].to_pylist()
    [seg] = (tmp_path / "runs" / "run=r").glob("seg-*.parquet")
    old = pq.read_table(seg)
    pq.write_table(old.drop_columns(["http_route"]), seg)
    again = s.read("r", dictionary=DICTIONARY_COLUMNS)
    assert again["http_route"].null_count == 6
    assert again["name"].to_pylist() == coded["name"].to_pylist()


def test_a_corrupt_parquet_file_is_named_in_one_line(tmp_path):
    """Files are decoded a few at a time in threads: a bad one still fails the read with its
    path, not a traceback from a worker."""
    for k in range(3):  # a file each
        w = StoreWriter(tmp_path)
        w.append(_table("r", 5, start=10 * k))
        w.close()
    files = sorted((tmp_path / "runs" / "run=r").glob("seg-*.parquet"))
    assert len(files) == 3
    files[1].write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1")
    with pytest.raises(SourceError, match=f"unreadable span store file {files[1]}: "):
        SpanStore(tmp_path).read("r", columns=["name"])
