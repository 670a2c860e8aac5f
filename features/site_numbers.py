"""Site numbers of session rows: the position of each row's ``site_id`` in a list of sites.

Matching tens of thousands of strings against a few site names costs more than most of the
feature arithmetic when done string by string (hashing each one). polars keeps strings as
Arrow string views: 16 bytes per row holding the length and either the whole string (up to 12
bytes) or its first 4 bytes and where it lies in a data buffer. Frames read from Parquet point
the rows of one site at one copy of its name, so rows with the same 16 bytes are the same
string: each distinct view is compared with the site names once, and the other rows are a
lookup in a table of views already seen (10x faster than the cast on the Perth sessions).
Columns whose rows each hold their own copy (built in Python, read from CSV) have as many
distinct views as rows; after a few, or for any other column (nulls, other string types),
polars' ``Enum`` cast does the work, with the same result.
"""

from __future__ import annotations

import sys

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit

_SLOTS = 4096  # entries of the table of views already seen (a power of two)
_INLINE = 12  # longest string held whole in its view [bytes]
_MAX_DISTINCT = 1024  # distinct views (beyond the rows' 1/16) after which the cast takes over


def compute_site_numbers(site_id: pl.Series, *, ids: list[str]) -> np.ndarray:
    """Return per row the position of its ``site_id`` in ``ids``, ``len(ids)`` if not there.

    Parameters
    ----------
    site_id
        String column of site ids (nulls count as not there).
    ids
        Distinct site ids.

    Returns
    -------
    numpy.ndarray
        int64, one value per row of ``site_id``.
    """
    arrow = site_id.to_arrow(compat_level=pl.CompatLevel.newest())
    if (
        not isinstance(arrow, pa.StringViewArray)
        or arrow.null_count
        or not len(arrow)
        or sys.byteorder != "little"  # the views are read as little-endian words
    ):
        return _by_enum(site_id, ids)
    _, views, *data = arrow.buffers()
    words = np.frombuffer(views, dtype=np.uint64).reshape(-1, 2)
    words = words[arrow.offset : arrow.offset + len(arrow)]
    sizes = [buffer.size for buffer in data]
    if sum(sizes) > 4 * len(arrow):  # rows with their own copies of long names: no sharing
        return _by_enum(site_id, ids)
    starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
    if len(data) == 1:  # the usual case: no copy
        joined = np.frombuffer(data[0], dtype=np.uint8)
    else:
        joined = np.frombuffer(b"".join(bytes(buffer) for buffer in data), dtype=np.uint8)
    encoded = [name.encode() for name in ids]
    names = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    name_starts = np.concatenate(([0], np.cumsum([len(e) for e in encoded], dtype=np.int64)))
    budget = _MAX_DISTINCT + len(arrow) // 16
    numbers = _match_views(words, joined, starts, names, name_starts, budget)
    return _by_enum(site_id, ids) if numbers is None else numbers


def _by_enum(site_id: pl.Series, ids: list[str]) -> np.ndarray:
    """:func:`compute_site_numbers` through polars' ``Enum`` cast (any string column)."""
    codes = site_id.cast(pl.Enum(ids), strict=False).to_physical().fill_null(len(ids))
    return codes.cast(pl.Int64).to_numpy()


@njit(cache=True, nogil=True)
def _view_bytes(
    low: np.uint64, high: np.uint64, data: np.ndarray, starts: np.ndarray, out: np.ndarray
) -> int:
    """Copy the string of the view ``(low, high)`` into ``out``; return its length [bytes]."""
    length = int(low & np.uint64(0xFFFFFFFF))
    if length <= _INLINE:  # bytes 4..16 of the view hold the string
        for k in range(length):
            word = low if k < 4 else high
            shift = 8 * ((k + 4) % 8)
            out[k] = np.uint8((word >> np.uint64(shift)) & np.uint64(0xFF))
        return length
    buffer = int(high & np.uint64(0xFFFFFFFF))
    offset = int(high >> np.uint64(32))
    at = starts[buffer] + offset
    out[:length] = data[at : at + length]
    return length


@njit(cache=True, nogil=True)
def _find(text: np.ndarray, length: int, names: np.ndarray, name_starts: np.ndarray) -> int:
    """Position of ``text[:length]`` among the names (``len(names)`` when absent)."""
    count = name_starts.size - 1
    for i in range(count):
        first, end = name_starts[i], name_starts[i + 1]
        if end - first != length:
            continue
        same = True
        for k in range(length):
            if text[k] != names[first + k]:
                same = False
                break
        if same:
            return i
    return count


@njit(cache=True, nogil=True)
def _match_views(  # noqa: PLR0917 - the views, data buffers, names and budget, for numba
    words: np.ndarray,
    data: np.ndarray,
    starts: np.ndarray,
    names: np.ndarray,
    name_starts: np.ndarray,
    budget: int,
) -> np.ndarray | None:
    """Site number of each view (two uint64 words per row); see :func:`compute_site_numbers`.

    None once more than ``budget`` views were not in the table (the rows do not share views).
    """
    seen_low = np.zeros(_SLOTS, dtype=np.uint64)
    seen_high = np.zeros(_SLOTS, dtype=np.uint64)
    seen_site = np.full(_SLOTS, -1, dtype=np.int64)  # -1: empty slot
    longest = 0
    for i in range(name_starts.size - 1):
        longest = max(longest, name_starts[i + 1] - name_starts[i])
    text = np.empty(max(longest, _INLINE) + 1, dtype=np.uint8)
    out = np.empty(words.shape[0], dtype=np.int64)
    for q in range(words.shape[0]):
        low, high = words[q, 0], words[q, 1]
        slot = int((low ^ (high * np.uint64(0x9E3779B97F4A7C15))) >> np.uint64(56)) % _SLOTS
        if seen_site[slot] >= 0 and seen_low[slot] == low and seen_high[slot] == high:
            out[q] = seen_site[slot]
            continue
        budget -= 1
        if budget < 0:
            return None
        length = int(low & np.uint64(0xFFFFFFFF))
        site = name_starts.size - 1  # not one of the names
        if length <= longest:
            _view_bytes(low, high, data, starts, text)
            site = _find(text, length, names, name_starts)
        seen_low[slot], seen_high[slot], seen_site[slot] = low, high, site
        out[q] = site
    return out
