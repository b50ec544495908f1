"""What a store file's attributes contain, found when the file is written and kept in it.

A check searches a run's attributes JSON for a few things that are nearly always absent:
token and card-number shapes (sensitive_data's pre-test) and sampling attributes
(completeness). Over a whole run that was the check's costliest scan: at 10M spans the
card-number pattern alone took 3.2 s of wall and 6.3 CPU-s, because RE2 crosses digit-heavy
JSON at about 400 MB/s. Compaction holds each batch's attributes in memory anyway; it
searches them there, once, and records in the Parquet footer which of `PATTERNS` occur
(`Marker`). The check then reads footers (`recorded`) and searches only the files that lack
a record for its pattern: files of older stores, or written by other tools.

A record is keyed by the pattern's own text, so a pattern changed in a later version is
simply not recorded in older files, and they are searched as before.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: the Parquet key-value metadata key of a file's record
KEY = b"slo.marks"
VERSION = 1

#: Bearer tokens and card numbers (issuer prefix, then 12-19 digits, single spaces or dashes
#: between them): what sensitive_data looks for besides e-mail addresses, which are common.
SENSITIVE_RARE = (
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|(^|[^0-9A-Za-z])(4|5[1-5]|2[2-7]|3[47]|6[045])[0-9]([ -]?[0-9]){10,16}([^0-9A-Za-z]|$)"
)
#: every e-mail address has one: without it sensitive_data has nothing to look at
AT = "@"
#: Words every sampling attribute contains (completeness's signals of a sampled run).
SAMPLING_WORDS = ("sampl", '"slo.tracestate"')

#: the patterns compaction records (RE2, searched over a segment's JSON objects end to end)
PATTERNS = (SENSITIVE_RARE, AT, *(re.escape(w) for w in SAMPLING_WORDS))


def search(chunk: pa.Array, pattern: str) -> bool:
    """Whether the RE2 `pattern` matches somewhere in a string array's data, searched as one
    string: zero-copy (the values lie end to end in one buffer) and at RE2's pace, where a
    search per value costs about 0.45 us each whatever the pattern. A match cannot run from
    one JSON object into the next when the pattern cannot cross a `}{`."""
    if len(chunk) == 0 or chunk.null_count == len(chunk):
        return False
    if pa.types.is_large_string(chunk.type) or pa.types.is_large_binary(chunk.type):
        width = "<i8"
    else:
        if not pa.types.is_string(chunk.type):
            chunk = chunk.cast(pa.string())
        width = "<i4"
    offsets = np.frombuffer(chunk.buffers()[1], width)[chunk.offset:chunk.offset + len(chunk) + 1]
    lo, hi = int(offsets[0]), int(offsets[-1])
    whole = pa.LargeStringArray.from_buffers(
        1, pa.py_buffer(np.array([0, hi - lo], np.int64)), chunk.buffers()[2].slice(lo, hi - lo))
    return bool(pc.match_substring_regex(whole, pattern)[0].as_py())


class Marker:
    """The record of one file being written: which `PATTERNS` its attributes hold so far.

    A pattern found once is not searched again in that file, so a run full of e-mail
    addresses costs one search of its first batch for `AT`."""

    def __init__(self, patterns: Sequence[str] = PATTERNS):
        self.found = dict.fromkeys(patterns, False)

    def add(self, attributes: pa.Array | pa.ChunkedArray) -> None:
        chunks = attributes.chunks if isinstance(attributes, pa.ChunkedArray) else [attributes]
        for pattern, seen in self.found.items():
            if not seen:
                self.found[pattern] = any(search(c, pattern) for c in chunks)

    def metadata(self) -> dict[bytes, bytes]:
        """The record as Parquet key-value metadata (`ParquetWriter.add_key_value_metadata`)."""
        return {KEY: json.dumps({"version": VERSION, "found": self.found}).encode()}


def recorded(path: str | Path) -> dict[str, bool]:
    """The patterns a file's record says are or are not in its attributes ({} when it has
    no record: searching it is the only way to know)."""
    try:
        st = os.stat(path)
    except OSError:
        return {}  # (the read proper names a missing file)
    return dict(_recorded(str(path), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=8192)
def _recorded(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, bool], ...]:
    """`recorded`, once per version of a file: a check asks each footer up to three times
    (sensitive_data twice, completeness once), and a long run has thousands of files."""
    try:
        meta = pq.read_metadata(path).metadata or {}
    except (OSError, pa.ArrowException):
        return ()  # (the read proper names an unreadable file)
    raw = meta.get(KEY)
    if raw is None:
        return ()
    try:
        record = json.loads(raw)
    except ValueError:
        return ()
    if not isinstance(record, dict) or record.get("version") != VERSION:
        return ()
    found = record.get("found")
    if not isinstance(found, dict):
        return ()
    return tuple((k, v) for k, v in found.items() if isinstance(k, str) and isinstance(v, bool))


def file_matches(path: str | Path, pattern: str) -> bool:
    """Whether the attributes of one Parquet file of spans hold a match of `pattern`: from its
    record when it has one for this pattern, else by reading and searching them."""
    known = recorded(path).get(pattern)
    if known is not None:
        return known
    col = pq.ParquetFile(path).read(columns=["attributes"], use_threads=False).column(0)
    return any(search(c, pattern) for c in col.chunks)


def any_file_matches(files: Iterable[str | Path], pattern: str, threads: int = 1) -> bool:
    """Whether any of these files' attributes hold a match of `pattern` (`file_matches`),
    a file per thread: reading and searching run without the GIL; the first match ends it."""
    files = list(files)
    if threads <= 1 or len(files) <= 1:
        return any(file_matches(p, pattern) for p in files)
    with ThreadPoolExecutor(threads) as pool:
        try:
            return any(pool.map(lambda p: file_matches(p, pattern), files))
        finally:
            pool.shutdown(cancel_futures=True)


def absent(files: Iterable[str | Path], patterns: Sequence[str]) -> bool:
    """True when every file's record says none of `patterns` occurs in it: a search over
    the files would find nothing. False when any file has it, or has no record for one of
    them (the caller then searches as it would without records)."""
    for p in files:
        record: dict[str, Any] = recorded(p)
        if any(record.get(pattern) is not False for pattern in patterns):
            return False
    return True
