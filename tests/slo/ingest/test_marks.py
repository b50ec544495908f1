"""Compaction records in each Parquet file which of the check's rare patterns its attributes
hold; the check trusts a record it finds and searches the files that have none."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from slo.ingest import marks
from slo.ingest.spans import make_row, table_from_rows
from slo.ingest.store import SpanStore, StoreWriter
from slo.judge.detectors import run_detectors
from slo.pipeline import read_for_check

T0 = 1_767_225_600_000_000_000
SAMPLING = [re.escape(w) for w in marks.SAMPLING_WORDS]


def _store(path: Path, attrs: list[dict]) -> list[Path]:
    """A run of 50 clean spans and one span per `attrs`; its Parquet files."""
    rows = [make_row(trace_id=f"{i:032x}", span_id=f"{i + 1:016x}", name="GET /users",
                     start_ns=T0 + i, end_ns=T0 + i + 5, service="user-service", kind="server",
                     attributes={"http.route": "/users", "user.id": 1234567890123 + i},
                     run_id="r1") for i in range(50)]
    rows += [make_row(trace_id=f"{100 + i:032x}", span_id=f"{200 + i:016x}", name="charge",
                      start_ns=T0 + i, end_ns=T0 + i + 1, service="payment", attributes=a,
                      run_id="r1") for i, a in enumerate(attrs)]
    w = StoreWriter(path)
    w.append(table_from_rows(rows))
    w.close()
    return sorted(path.glob("runs/*/seg-*.parquet"))


def _sensitive(path: Path) -> set[tuple[str, str]]:
    spans, source = read_for_check(SpanStore(path), "r1")
    try:
        found = run_detectors(spans, sql=source.sql, con=source.con, files=source.files)
    finally:
        source.close()
    return {(f["attribute"], f["kind"]) for f in found if f["detector"] == "sensitive_data"}


def _rewrite(path: Path, metadata: dict[bytes, bytes] | None) -> None:
    """The file as another tool would write it: the same spans, this footer metadata."""
    t = pq.read_table(path)
    t = t.replace_schema_metadata(metadata)
    pq.write_table(t, path)


def test_compaction_records_what_each_file_holds(tmp_path):
    (f,) = _store(tmp_path / "a", [{"card": "4111 1111 1111 1111"}, {"to": "jane@example.com"},
                                   {"sampler.type": "probabilistic"}])
    assert marks.recorded(f) == {marks.SENSITIVE_RARE: True, marks.AT: True,
                                 SAMPLING[0]: True, SAMPLING[1]: False}
    (f,) = _store(tmp_path / "b", [{"auth": "Bearer abcdef123456"}])
    assert marks.recorded(f) == {marks.SENSITIVE_RARE: True, marks.AT: False,
                                 SAMPLING[0]: False, SAMPLING[1]: False}
    (f,) = _store(tmp_path / "c", [{"n": "4111-1111"}])  # too short for a card number
    assert set(marks.recorded(f).values()) == {False}
    assert marks.absent([f], [marks.SENSITIVE_RARE, marks.AT])


def test_the_check_trusts_a_record_and_searches_files_without_one(tmp_path):
    attrs = [{"card": "4111-1111-1111-1111"}, {"to": "jane@example.com"}]
    (f,) = _store(tmp_path, attrs)
    both = {("card", "card_number"), ("to", "email")}
    assert _sensitive(tmp_path) == both
    # written by another tool (or an older version): no record, so searched as before
    _rewrite(f, None)
    assert marks.recorded(f) == {}
    assert not marks.absent([f], [marks.AT])
    assert _sensitive(tmp_path) == both
    # a record of another version is no record
    _rewrite(f, {marks.KEY: json.dumps({"version": 99, "found": {marks.AT: False}}).encode()})
    assert marks.recorded(f) == {} and _sensitive(tmp_path) == both
    _rewrite(f, {marks.KEY: b"not json"})
    assert marks.recorded(f) == {} and _sensitive(tmp_path) == both
    # a record is believed: the files are not read for what it says is absent (here it is
    # wrong on purpose, which only a test may do)
    record = {"version": marks.VERSION, "found": {marks.SENSITIVE_RARE: False}}
    _rewrite(f, {marks.KEY: json.dumps(record).encode()})
    assert _sensitive(tmp_path) == {("to", "email")}  # e-mails: the "@" was not recorded
    record["found"][marks.AT] = False
    _rewrite(f, {marks.KEY: json.dumps(record).encode()})
    assert _sensitive(tmp_path) == set()


_PIECES = st.sampled_from([*"0123456789- xaB@}{\"", "bearer ", "sampl", "4111"])
_TEXT = st.lists(_PIECES, max_size=20).map("".join)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_TEXT, min_size=1, max_size=30), cut=st.integers(0, 30))
def test_a_record_made_batch_by_batch_is_the_search_of_the_whole_file(values, cut):
    """Compaction records a segment's batches one at a time; the check's search reads the
    file's column whole. Both answer the same for every recorded pattern."""
    col = pa.array([json.dumps({"v": v}) for v in values], pa.string())
    m = marks.Marker()
    m.add(col.slice(0, cut))
    m.add(col.slice(cut))
    for pattern, found in m.found.items():
        assert found == marks.search(col, pattern), pattern
        assert found == marks.search(col.cast(pa.large_string()).slice(0), pattern)


def test_completeness_reads_no_attributes_where_no_file_holds_a_sampling_word(tmp_path):
    from slo.judge.completeness import _SIGNAL_KEYS

    (f,) = _store(tmp_path, [{"sampler.type": "probabilistic"}])
    spans, source = read_for_check(SpanStore(tmp_path), "r1")
    try:
        assert len(source.attributes_matching(_SIGNAL_KEYS, marks.SAMPLING_WORDS)) == 1
        record = {"version": marks.VERSION, "found": dict.fromkeys(SAMPLING, False)}
        _rewrite(f, {marks.KEY: json.dumps(record).encode()})  # (wrong on purpose)
        assert len(source.attributes_matching(_SIGNAL_KEYS, marks.SAMPLING_WORDS)) == 0
    finally:
        source.close()
