"""Span ids as 64-bit integers: what a large run's ids cost in memory, and back.

A span id is 16 hex digits. As Arrow strings each costs 20 bytes (the digits and an offset),
and a run's span and parent ids are a third of what the check holds of it (10M spans:
365 MB); as uint64 they cost 8, and the parent lookup needs them as integers anyway. Ids of
other shapes (foreign tools, hand-written traces) stay strings: every consumer takes both.
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: the id columns `packed` may turn into uint64
ID_COLUMNS = ("span_id", "parent_span_id")


def _pair_table() -> pa.Array:
    """Two bytes as they lie in memory, read as one native uint16 -> the byte their two hex
    digits (either case) spell, or 0xFFFF if either is not a hex digit."""
    nibble = np.full(256, 16, np.uint16)
    for digits, first in ((b"0123456789", 0), (b"abcdef", 10), (b"ABCDEF", 10)):
        nibble[np.frombuffer(digits, np.uint8)] = np.arange(first, first + len(digits))
    pair = np.arange(1 << 16, dtype=np.uint16).view(np.uint8).reshape(-1, 2)
    high, low = nibble[pair[:, 0]], nibble[pair[:, 1]]
    return pa.array(np.where((high < 16) & (low < 16), high << 4 | low, 0xFFFF).astype(np.uint16))


_PAIRS = _pair_table()


def _decode(data: pa.Buffer, start: int, out: np.ndarray) -> bool:
    """The `len(out)` ids of 16 hex digits lying end to end in `data` from byte `start`, as
    uint64 into `out` (contiguous); False if any byte is not a hex digit.

    Why a table of digit pairs, looked up by Arrow's `take`: it validates and decodes a byte
    per lookup, and neither it nor the numpy steps after it hold the GIL, so the store's
    reader threads pack ids side by side (`bytes.fromhex` held the GIL, over three copies)."""
    if not len(out):
        return True
    chars = data.slice(start, 16 * len(out))
    if chars.address % 2:  # (a uint16 array wants its buffer aligned)
        chars = pa.py_buffer(np.frombuffer(chars, np.uint8).copy())
    pairs = pc.take(_PAIRS, pa.Array.from_buffers(pa.uint16(), 8 * len(out), [None, chars]))
    digits = pairs.to_numpy()
    if digits.max() > 0xFF:
        return False
    np.copyto(out.view(np.uint8), digits, casting="unsafe")  # each id's bytes, first first
    if sys.byteorder == "little":
        out.byteswap(inplace=True)
    return True


def _strings(a: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A string array as plain or large strings without nulls (null -> ""), and its offsets."""
    if not (pa.types.is_string(a.type) or pa.types.is_large_string(a.type)):
        a = a.cast(pa.string())
    if a.null_count:
        a = a.fill_null("")
    kind = np.int64 if pa.types.is_large_string(a.type) else np.int32
    offsets = np.frombuffer(a.buffers()[1], kind, len(a) + 1, a.offset * kind().itemsize)
    return a, offsets


def _unpack(a: pa.Array, out: np.ndarray, present: np.ndarray, pad: bool) -> bool:
    """Decode the string ids `a` into `out` (0 where empty), `present` True where an id is not
    empty (null or ""); False if some id is not 16 hex digits. `pad`: ids shorter than 16
    digits are read as if "0"s followed them (what `hex64` does), not refused."""
    if not len(a):
        return True
    a, offsets = _strings(a)
    lengths = np.diff(offsets)
    if (lengths & ~16).any():  # a length other than 0 and 16
        if not pad or lengths.max() > 16:
            return False
        a, offsets = _strings(pc.utf8_rpad(a, 16, "0"))
        lengths = np.diff(offsets)
        if (lengths != 16).any():  # (non-ASCII)
            return False
    np.not_equal(lengths, 0, out=present)
    count = int(offsets[-1] - offsets[0]) // 16
    if count == len(a):
        return _decode(a.buffers()[2], int(offsets[0]), out)
    ids = np.empty(count, np.uint64)
    if not _decode(a.buffers()[2], int(offsets[0]), ids):
        return False
    out[:] = 0  # the non-empty ids lie end to end: spread them over their rows
    out[present] = ids
    return True


def _unpack_all(col: pa.ChunkedArray | pa.Array, pad: bool
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids, present) of a string id column, each chunk decoded straight into its rows of
    the one output (`_unpack`); None if some id is not 16 hex digits."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    out = np.empty(len(col), np.uint64)
    present = np.empty(len(col), np.bool_)
    at = 0
    for a in chunks:
        end = at + len(a)
        if not _unpack(a, out[at:end], present[at:end], pad=pad):
            return None
        at = end
    return out, present


def hex64(col: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """16-hex-digit ids as uint64 ("" -> 0; a packed column's nulls -> 0), a writable array
    of its own; None if any value is not 16 hex digits (either case; shorter ones are read
    as if padded with "0"s)."""
    if pa.types.is_uint64(col.type):
        return np.array(col.fill_null(0).to_numpy(zero_copy_only=False), np.uint64)
    decoded = _unpack_all(col, pad=True)
    return None if decoded is None else decoded[0]


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
    None (keep the strings) unless every id is exactly 16 hex digits (either case) or empty.

    Each chunk's ids are decoded straight into their rows of the one output array, and no
    step holds the GIL for long (see `_decode`)."""
    if pa.types.is_uint64(col.type):
        return col
    decoded = _unpack_all(col, pad=False)
    if decoded is None:
        return None
    out, present = decoded
    if present.all():
        return pa.chunked_array([pa.array(out, pa.uint64())])
    return pa.chunked_array([pa.array(out, pa.uint64(), mask=~present)])


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
