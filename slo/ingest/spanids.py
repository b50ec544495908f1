"""Span ids as 64-bit integers: what a large run's ids cost in memory, and back.

A span id is 16 hex digits. As Arrow strings each costs 20 bytes (the digits and an offset),
and a run's span and parent ids are a third of what the check holds of it (10M spans:
365 MB); as uint64 they cost 8, and the parent lookup needs them as integers anyway. Ids of
other shapes (foreign tools, hand-written traces) stay strings: every consumer takes both.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: the id columns `packed` may turn into uint64
ID_COLUMNS = ("span_id", "parent_span_id")


def hex64(col: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """16-hex-digit ids as uint64 ("" -> 0; a packed column's nulls -> 0), a writable array
    of its own; None if any value is not 16 hex digits."""
    if isinstance(col, pa.ChunkedArray):
        parts = [hex64(c) for c in col.chunks]
        if any(p is None for p in parts):
            return None
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(cast(list[np.ndarray], parts)) if parts else np.zeros(0, np.uint64)
    if pa.types.is_uint64(col.type):
        return np.array(col.fill_null(0).to_numpy(zero_copy_only=False), np.uint64)
    if col.null_count:
        col = col.fill_null("")
    padded = pc.utf8_rpad(col, 16, "0").cast(pa.string())
    offsets = np.frombuffer(padded.buffers()[1], np.int32)[padded.offset:
                                                          padded.offset + len(padded) + 1]
    if len(padded) == 0:
        return np.zeros(0, np.uint64)
    if offsets[-1] - offsets[0] != 16 * len(padded):
        return None
    raw = memoryview(padded.buffers()[2])[offsets[0]:offsets[-1]]
    try:
        decoded = bytes.fromhex(bytes(raw).decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    return np.frombuffer(decoded, ">u8").astype(np.uint64)


def ids64(col: pa.ChunkedArray) -> np.ndarray | None:
    """`hex64`, but of a packed column in one chunk the column's own buffer where it can be
    (read-only; nulls as 0): the parent lookup only reads the ids, and at 100M spans each copy
    is 0.8 GB."""
    if pa.types.is_uint64(col.type) and col.num_chunks == 1:
        chunk = col.chunk(0)
        return (chunk.to_numpy() if chunk.null_count == 0
                else chunk.fill_null(0).to_numpy(zero_copy_only=False))
    return hex64(col)


def packed(col: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """An id column as uint64 in one chunk, null where the id is empty (a root's parent);
    None (keep the strings) unless every id is exactly 16 hex digits or empty."""
    if pa.types.is_uint64(col.type):
        return col
    lengths = pc.utf8_length(col.fill_null(""))
    if not pc.all(pc.is_in(lengths, value_set=pa.array([0, 16], pa.int32()))).as_py():
        return None  # (hex64 pads shorter ids: only whole ones are packed)
    values = hex64(col)
    if values is None:
        return None
    empty = pc.equal(lengths, 0).combine_chunks() if len(col) else pa.array([], pa.bool_())
    return pa.chunked_array([pa.array(values, pa.uint64(),
                                      mask=empty.to_numpy(zero_copy_only=False))])


def hex16(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A packed id column (uint64) back to the 16-hex-digit strings it was read from, ""
    for nulls: what consumers of the span table's ids read."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    n = len(col)
    digits = col.fill_null(0).to_numpy(zero_copy_only=False).astype(">u8").tobytes().hex()
    text = pa.StringArray.from_buffers(
        n, pa.py_buffer(np.arange(0, 16 * n + 1, 16, dtype=np.int32)), pa.py_buffer(
            digits.encode("ascii")))
    return pc.if_else(col.is_valid(), text, "") if col.null_count else text
