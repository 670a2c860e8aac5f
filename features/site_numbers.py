"""Site numbers of session rows: the position of each row's ``site_id`` in a list of sites.

Matching tens of thousands of strings against a few site names costs more than most of the
feature arithmetic when done string by string (hashing each one). polars keeps strings as
Arrow string views: 16 bytes per row holding the length and either the whole string (up to 12
bytes) or its first 4 bytes and where it lies in a data buffer. Two rows with the same 16
bytes hold the same string, and frames read from Parquet point the rows of one site at one
copy of its name, so they have only a few distinct views: those are found in one pass over the
rows (a compiled loop with a hash table), and only their strings are compared with the site
names (10x faster than polars' ``Enum`` cast on the Perth sessions). Columns whose rows each
hold their own copy (built in Python, read from CSV) have as many distinct views as rows;
after a few, or for any other column (nulls, other string types), polars does the work, with
the same result.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit

_SLOTS = 4096  # entries of the hash table of distinct views (a power of two)
_MAX_DISTINCT = 1024  # distinct views (beyond the rows' 1/16) after which polars takes over


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
    found = _distinct_views(site_id)
    if found is None:
        return _by_enum(site_id, ids)
    view_of_row, names = found
    position = {name: i for i, name in enumerate(ids)}
    return np.take(np.array([position.get(name, len(ids)) for name in names]), view_of_row)


def compute_site_codes(site_id: pl.Series) -> tuple[list[str], np.ndarray]:
    """Return the sorted distinct site ids of a column and each row's position among them.

    Parameters
    ----------
    site_id
        String column of site ids, without nulls.

    Returns
    -------
    tuple
        The distinct ids, sorted, and per row the position of its id (int64).
    """
    found = _distinct_views(site_id)
    if found is None:
        ids = site_id.unique().sort().to_list()
        return ids, _by_enum(site_id, ids)
    view_of_row, names = found
    ids = sorted(set(names))
    position = {name: i for i, name in enumerate(ids)}
    return ids, np.take(np.array([position[name] for name in names]), view_of_row)


def _by_enum(site_id: pl.Series, ids: list[str]) -> np.ndarray:
    """:func:`compute_site_numbers` by polars' ``Enum`` cast (any string column)."""
    codes = site_id.cast(pl.Enum(ids), strict=False).to_physical().fill_null(len(ids))
    return codes.cast(pl.Int64).to_numpy()


def _distinct_views(site_id: pl.Series) -> tuple[np.ndarray, list[str]] | None:
    """Per row the number of its distinct string view, and the string of each view.

    None when the column is not a string-view array without nulls or has too many distinct
    views to be worth it.
    """
    arrow = site_id.to_arrow(compat_level=pl.CompatLevel.newest())
    if not isinstance(arrow, pa.StringViewArray) or arrow.null_count or not len(arrow):
        return None
    words = np.frombuffer(arrow.buffers()[1], dtype=np.uint64).reshape(-1, 2)
    words = words[arrow.offset : arrow.offset + len(arrow)]
    found = _number_views(words, _MAX_DISTINCT + len(arrow) // 16)
    if found is None:
        return None
    view_of_row, first_rows = found
    if first_rows.size > 64:  # polars' gather has a fixed cost, reading a few is cheaper
        return view_of_row, site_id.gather(first_rows).to_list()
    return view_of_row, [arrow[int(row)].as_py() for row in first_rows]


@njit(cache=True, nogil=True)
def _number_views(words: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Give the distinct views (two uint64 words per row) numbers, by first appearance.

    Returns per row its view's number and per view the first row holding it; None once more
    than ``budget`` distinct views were found.
    """
    table = np.full(_SLOTS, -1, dtype=np.int64)  # view number, -1: empty slot
    table_low = np.empty(_SLOTS, dtype=np.uint64)  # the view's words, kept beside it
    table_high = np.empty(_SLOTS, dtype=np.uint64)
    first_rows = np.empty(budget, dtype=np.int64)
    view_of_row = np.empty(words.shape[0], dtype=np.int64)
    views = 0
    for q in range(words.shape[0]):
        low, high = words[q, 0], words[q, 1]
        slot = int((low ^ (high * np.uint64(0x9E3779B97F4A7C15))) >> np.uint64(52)) % _SLOTS
        # open addressing: probe the next slots until the view or an empty slot
        while table[slot] >= 0 and (table_low[slot] != low or table_high[slot] != high):
            slot = (slot + 1) % _SLOTS
        if table[slot] < 0:
            if views == budget or views == _SLOTS // 2:
                return None
            table[slot], table_low[slot], table_high[slot] = views, low, high
            first_rows[views] = q
            views += 1
        view_of_row[q] = table[slot]
    return view_of_row, first_rows[:views]
