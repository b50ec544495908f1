"""The span store: one writer (the collector), any number of readers, nothing lost.

Layout under the store directory:

    wal/seg-<n>.arrows            Arrow IPC streams, appended to before the collector answers 200
    wal/next-segment              the next segment number (taken under flock by every writer)
    runs/run=<id>/seg-<n>.parquet one Parquet file per run and compacted WAL segment (zstd)
    meta/run=<id>.json            run metadata written by the load generator ({"version": 1, ...})

Why this shape: a write-ahead segment is appended with plain `write(2)` calls, so a span is
in the kernel's page cache (and survives `kill -9` of the collector) before its request is
answered, and readers see it at once. Segments are rotated (by size, when the stream goes
idle, at a clean stop) and compacted into per-run Parquet that DuckDB, Trino or Spark read
as they are. Compaction writes Parquet with atomic renames and deletes the segment last; a
reader uses a segment's WAL file while it exists and its Parquet files otherwise, so a
concurrent compaction never shows a span twice or not at all, and a crash mid-compaction is
repaired by compacting again (same file names, same content).

Several processes may append (the collector and its decoder processes, `WalWriter`), each to
segments of its own: a segment's number is taken from `wal/next-segment` under an flock, and
the segment being written is flocked by its writer for as long as it is open. The one
`StoreWriter` (which holds the store's writer lock) compacts every segment nobody holds: a
closed one, or one whose writer died (the kernel drops a dead process's locks), torn tail and
all.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from slo.errors import SourceError
from slo.ingest import runmeta
from slo.ingest.marks import Marker
from slo.ingest.runmeta import run_dir_name as run_dir_name  # re-exported
from slo.ingest.spanids import ID_COLUMNS, hex16, packed
from slo.ingest.spans import SCHEMA

if TYPE_CHECKING:
    from slo.ingest.runsource import RunSource

_SEG = re.compile(r"seg-(\d+)\.(arrows|parquet)$")
#: the next WAL segment number, shared by every process that appends to the store
NEXT_SEGMENT = "next-segment"
#: bytes gathered before Arrow writes to a WAL segment; larger groups pass straight through
_WAL_BUFFER = 1 << 20
#: files a read decodes at once, each in a thread of its own (`_read_parquet` reads one file
#: single-threaded; Arrow decodes without the GIL): 10M spans read in 2.4-2.7 s, not 4.1
READERS = min(4, os.cpu_count() or 1)
_RUN_STAT_COLUMNS = ["run_id", "trace_id", "start_ns", "end_ns"]
#: String columns with few distinct values (Parquet stores them as dictionaries; a trace's
#: spans share its id): what `SpanStore.read(dictionary=...)` may keep encoded. Not the span
#: ids (one per span). run_id: one value a run, which decoded cost 8 bytes a span and a
#: quarter of the check's Parquet decode CPU besides (10M spans: 76 MiB, 0.25 CPU-s).
DICTIONARY_COLUMNS = ("run_id", "trace_id", "service", "name", "kind", "status_message",
                      "db_system", "db_statement", "http_route")


def _plain(col: Any) -> Any:
    """A string column as plain strings (decoded if dictionary-encoded)."""
    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def _schema(columns: list[str] | None, dictionary: Sequence[str] = ()) -> pa.Schema:
    """`SCHEMA` (or these columns of it), the `dictionary` columns dictionary-encoded."""
    fields = [SCHEMA.field(c) for c in (columns if columns is not None else SCHEMA.names)]
    return pa.schema([pa.field(f.name, pa.dictionary(pa.int32(), f.type)) if f.name in dictionary
                      else f for f in fields])
#: the run of spans that carry no run id (the collector's default `--run-id`)
UNLABELLED = ""


@dataclass(frozen=True)
class RunInfo:
    """One run in the store: how many spans and traces, and the time its spans cover."""

    run_id: str
    spans: int
    traces: int
    start_ns: int
    end_ns: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seg_number(path: Path) -> int | None:
    m = _SEG.search(path.name)
    return int(m.group(1)) if m else None


def iter_segment(path: Path, mapped: bool = False) -> Iterator[pa.RecordBatch]:
    """Every complete record batch of a WAL segment, streamed; a torn tail (crash mid-write)
    ends the stream. Raises FileNotFoundError if the segment is gone (compacted meanwhile).

    `mapped`: the batches are views of the file mapped into memory instead of copies read
    into new buffers. For closed segments only (compaction): a segment is never truncated,
    but the mapping covers only the size the file had when it was opened."""
    with (pa.memory_map(str(path), "r") if mapped else pa.OSFile(str(path), "rb")) as f:
        try:
            reader = ipc.open_stream(f)
            while True:
                try:
                    yield reader.read_next_batch()
                except StopIteration:
                    return
        except (pa.ArrowException, OSError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            return  # empty file, torn schema or torn last batch: keep what is complete


def _combinable(field: pa.Field) -> bool:
    """Whether `SpanStore.read(contiguous=True)` puts this column in one chunk: fixed-width
    and dictionary-encoded ones. Plain strings stay chunked: one chunk of a 100M-span run's
    ids would pass the 2 GiB that 32-bit string offsets address."""
    return bool(pa.types.is_dictionary(field.type) or pa.types.is_primitive(field.type))


def _pack(t: pa.Table) -> pa.Table:
    """`t` with its id columns packed as uint64 where every id allows it (`spanids.packed`)."""
    for name in ID_COLUMNS:
        if name in t.column_names:
            ids = packed(t.column(name))
            if ids is not None:
                t = t.set_column(t.column_names.index(name), name, ids)
    return t


def _combine(schema: pa.Schema, columns: list[pa.ChunkedArray]) -> None:
    """Each `_combinable` column of `columns` in one chunk, in place, READERS columns at a
    time: Arrow copies (and unifies dictionaries) without the GIL, and the copies were a
    serial 0.8 s after the parallel decode (10M spans)."""
    todo = [i for i, f in enumerate(schema) if columns[i].num_chunks > 1 and _combinable(f)]

    def one(i: int) -> None:
        columns[i] = pa.chunked_array([columns[i].combine_chunks()])
        # (the freed chunks are small: malloc keeps them unless asked to trim)
        pa.default_memory_pool().release_unused()

    with ThreadPoolExecutor(READERS) as pool:
        list(pool.map(one, todo))


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """The tables as one of `schema`, except that id columns packed in every table stay
    packed; where some file's ids could not be packed, the others' are strings again."""
    fields = []
    for f in schema:
        if f.name in ID_COLUMNS and all(pa.types.is_uint64(t.schema.field(f.name).type)
                                        for t in tables):
            f = pa.field(f.name, pa.uint64())
        fields.append(f)
    want = pa.schema(fields)
    out = []
    for t in tables:
        for name in ID_COLUMNS:
            if (name in t.column_names and pa.types.is_uint64(t.schema.field(name).type)
                    and not pa.types.is_uint64(want.field(name).type)):
                t = t.set_column(t.column_names.index(name), name, hex16(t.column(name)))
        out.append(t.cast(want))
    return pa.concat_tables(out)


def read_segment(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A WAL segment as a table (see `iter_segment`)."""
    if not path.exists():
        raise FileNotFoundError(path)
    batches = [b.select(columns) if columns else b for b in iter_segment(path)]
    schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
    return pa.Table.from_batches(batches, schema=schema)


def _read_parquet(path: Path, columns: list[str] | None, whole: pa.Schema,
                  dictionary: Sequence[str]) -> pa.Table:
    """One Parquet segment of the store.

    The `dictionary` columns come as Parquet stores them (`read_dictionary`: its codes and
    its dictionary page), not decoded to strings and encoded again, which is what asking for
    a dictionary type in the schema does (10M spans: 2.3 CPU-s instead of 8.3 for the check's
    columns). One thread per file: Arrow's column threads cost more CPU than they save on a
    small, shared box. A file without some column (written by an older schema) is read
    through the schema, which fills it with nulls."""
    try:
        f = pq.ParquetFile(path, read_dictionary=[c for c in dictionary
                                                  if columns is None or c in columns])
    except KeyError:  # no such column in this file
        f = None
    if f is None or any(c not in f.schema_arrow.names
                        for c in (columns if columns is not None else whole.names)):
        return pq.read_table(path, columns=columns, schema=whole, use_threads=False)
    return f.read(columns=columns, use_threads=False)


class SpanStore:
    """Reader side of the store. Never locks; safe while a collector is writing."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.wal_dir = self.path / "wal"
        self.runs_dir = self.path / "runs"
        self.meta_dir = self.path / "meta"

    # ------------------------------------------------------------------ reading

    def _check_exists(self) -> None:
        if not self.path.is_dir():
            raise SourceError(
                f"no span store at {self.path} (start `slo collect --store {self.path}` "
                "or pass --traces/--jaeger)"
            )

    def _load(self, run_ids: set[str] | None, columns: list[str] | None,
              dictionary: Sequence[str] = (), packed_ids: bool = False) -> pa.Table:
        """Spans of the given runs (None: all) from Parquet and live WAL segments, no duplicates.

        `dictionary`: string columns to keep dictionary-encoded; `packed_ids`: ids as uint64,
        a file at a time, so the run's id strings are never all held (see `read`)."""
        for _attempt in range(20):
            wal = sorted(self.wal_dir.glob("seg-*.arrows")) if self.wal_dir.is_dir() else []
            wal_segs = {_seg_number(p) for p in wal}
            if run_ids is None:
                dirs = [d for d in self.runs_dir.glob("run=*")] if self.runs_dir.is_dir() else []
            else:
                dirs = [self.runs_dir / run_dir_name(r) for r in run_ids]
            parquet = [
                p
                for d in dirs
                if d.is_dir()
                for p in sorted(d.glob("seg-*.parquet"))
                if _seg_number(p) not in wal_segs
            ]
            schema, whole = _schema(columns, dictionary), _schema(None, dictionary)
            tables = []
            try:
                for p in wal:
                    t = read_segment(p, columns)
                    if run_ids is not None and t.num_rows:
                        t = t.filter(pc.is_in(t["run_id"], pa.array(sorted(run_ids), pa.string())))
                    tables.append(_pack(t) if packed_ids else t)
            except FileNotFoundError:
                continue  # compacted while we listed: its Parquet is complete now, list again
            def one(p: Path, whole: pa.Schema = whole) -> pa.Table:
                try:
                    t = _read_parquet(p, columns, whole, dictionary)
                except FileNotFoundError:
                    raise
                except (pa.ArrowException, OSError) as e:
                    raise SourceError(f"unreadable span store file {p}: {e}") from None
                return _pack(t) if packed_ids else t

            try:
                # a file per thread (Arrow decodes without the GIL), in order
                with ThreadPoolExecutor(READERS) as pool:
                    tables += pool.map(one, parquet)
            except FileNotFoundError:
                continue
            if not tables:
                return schema.empty_table()
            return _concat(tables, schema)
        raise SourceError(f"span store {self.path} kept changing while being read; try again")

    def runs(self) -> list[RunInfo]:
        """Every run with span and trace counts and time range, oldest first."""
        self._check_exists()
        t = self._load(None, _RUN_STAT_COLUMNS)
        if not t.num_rows:
            return []
        g = t.group_by("run_id").aggregate(
            [
                ("run_id", "count"),
                ("trace_id", "count_distinct"),
                ("start_ns", "min"),
                ("end_ns", "max"),
            ]
        )
        out = [
            RunInfo(r["run_id"], r["run_id_count"], r["trace_id_count_distinct"],
                    r["start_ns_min"], r["end_ns_max"])
            for r in g.to_pylist()
        ]
        return sorted(out, key=lambda r: (r.end_ns, r.run_id))

    def latest_run_id(self) -> str | None:
        """The run whose spans end last; a named run wins over spans without a run id."""
        runs = self.runs()
        named = [r for r in runs if r.run_id]
        pick = named or runs
        return pick[-1].run_id if pick else None

    def read(
        self,
        run_ids: str | list[str] | None = None,
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        adopt: bool = True,
        columns: list[str] | None = None,
        dictionary: Sequence[str] = (),
        contiguous: bool = False,
        packed_ids: bool = False,
    ) -> pa.Table:
        """Spans of the runs (None: the latest run) that start inside [start_ns, end_ns).

        `adopt`: spans without a run id (services that copy no baggage, e.g. zero-code
        auto-instrumentation) join the run of their trace; see `_adopt_unlabelled`.
        `columns`: only these columns, in this order (None: all of `SCHEMA`). Parquet is
        columnar: the JSON columns a stage does not use are never decoded.
        `dictionary`: string columns (of few distinct values: `DICTIONARY_COLUMNS`) returned
        dictionary-encoded, as Parquet already stores them: a 10M-span run then holds a
        4-byte code per span for each, not the strings (`slo check` reads so).
        `contiguous`: each fixed-width and dictionary column in one chunk (one dictionary).
        A read is a chunk per file (hundreds at 10M spans) and numpy needs one buffer: each
        `to_numpy` of a chunked column copies it, so the check held every code and time
        column twice (10M spans: about 0.4 GiB).
        `packed_ids`: span_id and parent_span_id as uint64 (null: no parent) when every id
        is 16 hex digits (`slo.ingest.spanids.packed`), not strings: 8 bytes an id, not 20.
        """
        bad = [c for c in dictionary if c not in DICTIONARY_COLUMNS]
        if bad:
            raise SourceError(f"span column(s) {', '.join(bad)} cannot be read dictionary-"
                              f"encoded (only {', '.join(DICTIONARY_COLUMNS)})")
        load = None
        if columns is not None:
            unknown = [c for c in columns if c not in SCHEMA.names]
            if unknown:
                raise SourceError(f"no span column(s) {', '.join(unknown)} "
                                  f"(columns: {', '.join(SCHEMA.names)})")
            inner = {"run_id", "trace_id", "start_ns"}  # what the filters and adoption use
            load = [c for c in SCHEMA.names if c in columns or c in inner]
        self._check_exists()
        if run_ids is None:
            latest = self.latest_run_id()
            if latest is None:
                raise SourceError(f"span store {self.path} holds no spans yet")
            wanted = {latest}
        else:
            wanted = {run_ids} if isinstance(run_ids, str) else set(run_ids)
        t = self._load(wanted, load, dictionary, packed_ids)
        unknown = sorted(wanted - set(pc.unique(t["run_id"]).to_pylist()))
        if unknown:
            runs = self.runs()
            names = ", ".join(repr(r.run_id) for r in runs[-20:]) or "none"
            raise SourceError(
                f"run {', '.join(map(repr, unknown))} is not in span store {self.path} "
                f"(known runs: {names})"
            )
        if adopt and UNLABELLED not in wanted:
            t = self._adopt_unlabelled(t, load, dictionary, packed_ids)
        if start_ns is not None:
            t = t.filter(pc.greater_equal(t["start_ns"], start_ns))
        if end_ns is not None:
            t = t.filter(pc.less(t["start_ns"], end_ns))
        if columns is not None:
            t = t.select(columns)
        if contiguous:
            # the list is the only reference to the columns: each column's chunks go as its
            # copy comes, so the memory held grows by a column a thread, not by the table
            schema, cols = t.schema, t.columns
            del t
            _combine(schema, cols)
            t = pa.Table.from_arrays(cols, schema=schema)
        if packed_ids:  # the files' id strings, freed as each file was packed, likewise
            pa.default_memory_pool().release_unused()
        return t

    def source(
        self,
        run_ids: str | list[str],
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        adopt: bool = True,
    ) -> RunSource | None:
        """The same spans as `read` with these arguments, as SQL over the Parquet files.

        None while the store has live write-ahead-log segments (a collector is writing):
        those are Arrow IPC files, which `read` merges and the relation does not.
        """
        if self.wal_dir.is_dir() and any(self.wal_dir.glob("seg-*.arrows")):
            return None
        from slo.ingest.runsource import RunSource

        wanted = {run_ids} if isinstance(run_ids, str) else set(run_ids)

        def files(runs: set[str]) -> list[Path]:
            return [p for r in sorted(runs)
                    for p in sorted((self.runs_dir / run_dir_name(r)).glob("seg-*.parquet"))]

        own = files(wanted)
        if not own:
            return None
        orphans = files({UNLABELLED}) if adopt and UNLABELLED not in wanted else []
        return RunSource(own, orphans, start_ns=start_ns, end_ns=end_ns)

    def _adopt_unlabelled(self, t: pa.Table, columns: list[str] | None = None,
                          dictionary: Sequence[str] = (), packed_ids: bool = False
                          ) -> pa.Table:
        """Add the unlabelled spans whose trace belongs to a run in `t`, relabelled to that run.

        A span belongs to the run of its trace: the load generator's client span (and any
        service that copies the baggage) carries the run id, so a service that copies nothing
        is still counted, exactly, however its spans interleave in time with another run's
        (both sides of a gate run at once). Done at read time, so the order in which the
        spans arrived does not matter.
        """
        if not t.num_rows:
            return t
        orphans = self._load({UNLABELLED}, columns, dictionary, packed_ids)
        if not orphans.num_rows:
            return t
        by = t.select(["trace_id", "run_id"])
        if pa.types.is_dictionary(by.schema.field("trace_id").type):  # one dictionary to group
            by = by.set_column(0, "trace_id", by["trace_id"].unify_dictionaries())
        by = by.set_column(1, "run_id", _plain(by["run_id"]))  # ("min" takes no dictionary)
        traces = by.group_by("trace_id").aggregate([("run_id", "min")])
        keys = _plain(traces["trace_id"].combine_chunks())
        idx = pc.index_in(_plain(orphans["trace_id"]), value_set=keys)
        keep = pc.is_valid(idx)
        if not pc.any(keep).as_py():
            return t
        adopted = orphans.filter(keep)
        runs = pc.take(traces["run_id_min"], idx.filter(keep))
        adopted = adopted.set_column(adopted.schema.get_field_index("run_id"), "run_id", runs)
        return _concat([t, adopted], t.schema)

    def sql(self, query: str, run_ids: str | list[str] | None = None) -> pa.Table:
        """DuckDB SQL over the spans (as table `spans`) of the given runs, as an Arrow table."""
        import duckdb

        con = duckdb.connect()
        try:
            con.register("spans", self.read(run_ids))
            return con.sql(query).to_arrow_table()
        finally:
            con.close()

    # ------------------------------------------------------------------ run metadata

    def _meta_path(self, run_id: str) -> Path:
        return runmeta.meta_path(self.path, run_id)

    def write_run_meta(self, run_id: str, meta: dict[str, Any]) -> None:
        """Save a run's metadata (start/end times, users, totals) atomically."""
        runmeta.write_run_meta(self.path, run_id, meta)

    def read_run_meta(self, run_id: str) -> dict[str, Any] | None:
        return runmeta.read_run_meta(self.path, run_id)


class WalWriter:
    """Appends spans to WAL segments of its own: one of the processes that write a store.

    `append` returns once the spans are written to the segment file (page cache), which is
    what the collector waits for before answering 200. The segment being written is held
    under an flock, so the store's `StoreWriter` compacts it only once it is closed or its
    writer is dead. A decoder process uses this class alone; `StoreWriter` is the one that
    also owns the store.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        segment_bytes: int = 32 * 1024 * 1024,
        idle_seconds: float = 2.0,
        max_age_seconds: float = 60.0,
    ):
        self.store = SpanStore(path)
        self.segment_bytes = segment_bytes
        self.idle_seconds = idle_seconds
        self.max_age_seconds = max_age_seconds
        self._opened = 0.0
        self._lock = threading.Lock()
        self._writer: ipc.RecordBatchStreamWriter | None = None
        self._file: pa.NativeFile | None = None
        self._buffer: pa.BufferedOutputStream | None = None
        self._seg_lock: IO[bytes] | None = None  # the flock on the open segment
        self._commit_cond = threading.Condition()
        self._commit_queue: list[_Commit] = []
        self._committing = False
        self._seg_path: Path | None = None
        self._seg_bytes = 0
        self._last_append = 0.0
        self.spans_written = 0

    def _claim_number(self) -> int:
        """The next segment number, unique among all the store's writing processes."""
        import fcntl

        with open(self.store.wal_dir / NEXT_SEGMENT, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            text = f.read().strip()
            n = int(text) if text.isdigit() else 1
            f.seek(0)
            f.truncate()
            f.write(f"{n + 1}\n")
            f.flush()
        return n

    def append(self, table: pa.Table) -> None:
        """Write spans to the current WAL segment (creating one if needed)."""
        self.append_many([table])

    def append_many(self, tables: list[pa.Table]) -> None:
        """Write several requests' spans to the WAL with one `write(2)` (a group commit).

        Why buffered: Arrow's IPC writer issues a write per buffer (about 50 per request);
        gathering the batches in memory and flushing once costs a third of that CPU. The
        flush is what makes the spans durable against `kill -9`, so it happens before this
        returns; when it fails, nothing of the group may be acknowledged.
        """
        tables = [t if t.schema == SCHEMA else t.cast(SCHEMA) for t in tables if t.num_rows]
        if not tables:
            return
        with self._lock:
            if self._writer is None:
                self._open_segment()
            assert self._writer is not None and self._buffer is not None and self._file is not None
            try:
                for table in tables:
                    self._writer.write_table(table)
                self._buffer.flush()
            except BaseException:
                # a torn batch ends what readers can see of this segment: never append
                # after it; the next request starts a fresh segment, and this one, no longer
                # held, is compacted as it is
                for closing in (c for c in (self._writer, self._buffer, self._file) if c is not None):
                    with contextlib.suppress(Exception):
                        closing.close()
                self._writer = self._buffer = self._file = self._seg_path = None
                self._release_segment()
                raise
            # the segment's size as written (`Table.nbytes` walked every buffer of every
            # column: 32 us per 512-span request, on the request path)
            self._seg_bytes = self._file.tell()
            for table in tables:
                self.spans_written += table.num_rows
            self._last_append = time.monotonic()
            if self._seg_bytes >= self.segment_bytes:
                self._closed(self._close_segment())

    def _closed(self, path: Path | None) -> None:
        """A segment of this writer was closed (the store's owner compacts it)."""

    def commit(self, table: pa.Table) -> None:
        """`append` for many concurrent callers: returns once `table` is in the WAL, having
        written it together with whatever other callers handed in meanwhile (group commit).

        The first caller to find no write under way writes every table waiting, the others
        wait for the write that contains theirs and get its error if it failed. Why: the
        collector decodes the next request while this one is written (the write releases the
        GIL), and requests that finish decoding together share one `write(2)`.
        """
        mine = _Commit(table)
        with self._commit_cond:
            self._commit_queue.append(mine)
            while not mine.done and self._committing:
                self._commit_cond.wait()
            if mine.done:
                if mine.error is not None:  # (a fresh exception: one per waiting thread)
                    raise OSError(f"write-ahead log write failed: {mine.error}") from mine.error
                return
            group, self._commit_queue = self._commit_queue, []
            self._committing = True
        try:
            self.append_many([c.table for c in group])
        finally:  # the write's own exception, if any, goes on up from here
            error = sys.exc_info()[1]
            with self._commit_cond:
                for c in group:
                    c.done, c.error, c.table = True, error, None
                self._committing = False
                self._commit_cond.notify_all()

    def _open_segment(self) -> None:
        """A new segment, created under a name readers and the compactor ignore, locked, and
        only then given its name: nobody ever sees it unheld while this writer lives."""
        import fcntl

        path = self.store.wal_dir / f"seg-{self._claim_number():012d}.arrows"
        new = path.with_name(path.name + ".new")
        self._file = pa.OSFile(str(new), "wb")
        try:
            self._seg_lock = open(new, "rb")  # noqa: SIM115 - held while the segment is open
            fcntl.flock(self._seg_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(new, path)
        except BaseException:
            self._file.close()
            self._release_segment()
            new.unlink(missing_ok=True)
            raise
        self._seg_path = path
        self._buffer = pa.BufferedOutputStream(self._file, buffer_size=_WAL_BUFFER)
        self._writer = ipc.new_stream(self._buffer, SCHEMA)  # (writes the schema with the
        # first batch: until then readers see an empty file, which `iter_segment` allows)
        self._seg_bytes = 0
        self._opened = time.monotonic()

    def _release_segment(self) -> None:
        if self._seg_lock is not None:
            self._seg_lock.close()
            self._seg_lock = None

    def _close_segment(self) -> Path | None:
        if self._writer is None:
            return None
        self._writer.close()
        assert self._buffer is not None and self._file is not None
        self._buffer.close()  # flushes the end-of-stream marker, closes the file
        self._file.close()
        path = self._seg_path
        self._writer = self._buffer = self._file = self._seg_path = None
        self._release_segment()  # after the last byte: now it may be compacted
        return path

    def close_idle(self, now: float | None = None) -> Path | None:
        """Close the open segment once the stream has been idle for `idle_seconds` (a load
        test has ended, most likely) or it is `max_age_seconds` old (a trickle that never
        pauses); returns it if closed."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._writer is not None and (
                now - self._last_append >= self.idle_seconds
                or now - self._opened >= self.max_age_seconds
            ):
                return self._close_segment()
        return None

    def close(self) -> None:
        """Close the open segment (for the store's owner to compact)."""
        with self._lock:
            self._closed(self._close_segment())


class StoreWriter(WalWriter):
    """The store's one owner: appends to the WAL like any `WalWriter`, and compacts every
    segment no writer holds (its own and its decoder processes') into Parquet.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        segment_bytes: int = 32 * 1024 * 1024,
        idle_seconds: float = 2.0,
        max_age_seconds: float = 60.0,
    ):
        super().__init__(path, segment_bytes=segment_bytes, idle_seconds=idle_seconds,
                         max_age_seconds=max_age_seconds)
        self._compact_lock = threading.Lock()
        self._pending: list[Path] = []
        for d in (self.store.wal_dir, self.store.runs_dir, self.store.meta_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._lock_file: IO[str] | None = self._take_writer_lock()
        self.recover()
        (self.store.wal_dir / NEXT_SEGMENT).write_text(f"{self._max_seg() + 1}\n")

    @property
    def lock_fd(self) -> int:
        """The writer lock's file descriptor: a process that inherits it keeps the store
        locked for as long as it lives (the collector's decoder processes)."""
        assert self._lock_file is not None
        return self._lock_file.fileno()

    def _take_writer_lock(self) -> IO[str]:
        """One writer per store: a second collector on the same store would mix segments.

        An flock is released by the kernel when the process dies, even by kill -9.
        """
        import fcntl

        f = open(self.store.path / "writer.lock", "a+")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise SourceError(
                f"span store {self.store.path} is already being written by {holder}; "
                "stop that collector or use another --store"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        return f

    def _max_seg(self) -> int:
        nums = [_seg_number(p) or 0 for p in self.store.wal_dir.glob("seg-*.arrows")]
        nums += [_seg_number(p) or 0 for p in self.store.runs_dir.glob("run=*/seg-*.parquet")]
        return max(nums, default=0)

    def recover(self) -> int:
        """Compact segments left by a previous process (crash or kill -9). Returns spans.

        Whoever holds the writer lock is the only writer, so every segment is left over,
        whatever its flock says."""
        n = 0
        for p in self.store.wal_dir.glob("seg-*.arrows.new"):  # never named: nothing in it
            p.unlink(missing_ok=True)
        for p in sorted(self.store.wal_dir.glob("seg-*.arrows")):
            n += self._compact(p)
        for p in self.store.runs_dir.glob("run=*/*.tmp"):
            p.unlink(missing_ok=True)
        return n

    def _closed(self, path: Path | None) -> None:
        if path is not None:
            self._pending.append(path)

    def rotate(self) -> None:
        """Close the current segment and compact it."""
        with self._lock:
            path = self._close_segment()
        if path:
            self._compact(path)

    def maintain(self) -> None:
        """Background duty: close the open segment once idle or old (`close_idle`), and
        compact every segment no writer holds: this writer's closed ones, its decoder
        processes' closed ones, and those of a decoder process that died."""
        closed = self.close_idle()
        with self._lock:
            pending, self._pending = self._pending, []
            own = self._seg_path
        if closed is not None:
            pending.append(closed)
        for path in pending:
            self._compact(path)
        for path in sorted(self.store.wal_dir.glob("seg-*.arrows")):
            if path != own and _unheld(path):
                self._compact(path)

    def close(self) -> None:
        """Flush everything into Parquet (a clean stop) and give up the writer lock."""
        self.idle_seconds = 0.0
        self.maintain()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _compact(self, seg: Path) -> int:
        """Segment -> one Parquet file per run, then delete the segment. Idempotent.

        Streams the segment batch by batch into per-run Parquet writers, so memory stays at
        about one row group per run whatever the segment size.
        """
        with self._compact_lock:
            if not seg.exists():
                return 0
            seg_no = _seg_number(seg)
            out: dict[str, _RunFile] = {}
            n = 0
            try:
                for batch in iter_segment(seg, mapped=True):
                    n += batch.num_rows
                    col = batch.column("run_id")
                    runs = pc.unique(col).to_pylist()
                    for run_id in runs:
                        part = batch if len(runs) == 1 else batch.filter(pc.equal(col, run_id))
                        if run_id not in out:
                            d = self.store.runs_dir / run_dir_name(run_id)
                            d.mkdir(parents=True, exist_ok=True)
                            out[run_id] = _RunFile(d / f"seg-{seg_no:012d}.parquet")
                        out[run_id].add(part)
            except FileNotFoundError:
                return 0
            for f in out.values():
                f.finish()
            with contextlib.suppress(FileNotFoundError):
                seg.unlink()
            pa.default_memory_pool().release_unused()
            return n


def _unheld(path: Path) -> bool:
    """True when no writer holds this WAL segment (closed, or its writer died)."""
    import fcntl

    try:
        with open(path, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
    except FileNotFoundError:
        return False


@dataclass
class _Commit:
    """One caller's table waiting in `StoreWriter.commit`, and how its write ended."""

    table: pa.Table | None
    done: bool = False
    error: BaseException | None = None


#: columns with few distinct values. Ids, times and attribute JSON are nearly all distinct:
#: trying a dictionary for them costs compaction CPU and makes the files larger.
_DICTIONARY_COLUMNS = [c for c in SCHEMA.names if c not in (
    "trace_id", "span_id", "parent_span_id", "start_ns", "end_ns", "attributes")]
#: columns whose min/max can skip a row group (runs, services, names, times, status); the
#: JSON and free-text columns' statistics only cost compaction CPU (about 8% of the write)
_STATISTICS_COLUMNS = [c for c in SCHEMA.names if c not in (
    "span_id", "parent_span_id", "status_message", "db_statement", "attributes", "resource",
    "events")]


class _RunFile:
    """One run's Parquet file of one segment: written to a temporary name, renamed at the end."""

    ROW_GROUP = 16384

    def __init__(self, final: Path):
        self.final = final
        self.tmp = final.with_name(final.name + ".tmp")
        self.writer = pq.ParquetWriter(str(self.tmp), SCHEMA, compression="zstd",
                                       use_dictionary=_DICTIONARY_COLUMNS,
                                       write_statistics=_STATISTICS_COLUMNS)
        self.pending: list[pa.RecordBatch] = []
        self.rows = 0
        self.marker = Marker()  # what the attributes hold, for the check (slo.ingest.marks)

    def add(self, batch: pa.RecordBatch) -> None:
        self.marker.add(batch.column("attributes"))
        self.pending.append(batch)
        self.rows += batch.num_rows
        if self.rows >= self.ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_batches(self.pending, schema=SCHEMA),
                                    row_group_size=self.ROW_GROUP * 2)
        self.pending, self.rows = [], 0

    def finish(self) -> None:
        self.flush()
        self.writer.add_key_value_metadata(self.marker.metadata())
        self.writer.close()
        os.replace(self.tmp, self.final)
