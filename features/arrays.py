"""Uninitialised arrays in Arrow's memory pool, for the large per-call arrays of :mod:`features`.

numpy takes large arrays from the C allocator, which hands freed memory back to the kernel, so
each call pays again to map fresh pages (several microseconds per 4 KiB page on small VMs,
more than the arithmetic on them here). Arrow's default pool (mimalloc) mostly keeps freed
pages for the next call. The arrays are ordinary writable numpy arrays; polars takes them
without a copy, and the pool gets the memory back when the last reference goes.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa


def empty(shape: int | tuple[int, ...], dtype: type | np.dtype = np.float64) -> np.ndarray:
    """Return an uninitialised array from Arrow's memory pool.

    Parameters
    ----------
    shape
        Length, or shape of a C-ordered array.
    dtype
        numpy dtype of the values.

    Returns
    -------
    numpy.ndarray
        Writable, contents undefined; it keeps its Arrow buffer alive.
    """
    dims = (shape,) if isinstance(shape, int) else shape
    kind = np.dtype(dtype)
    count = math.prod(dims)
    buffer = pa.allocate_buffer(max(1, count * kind.itemsize))
    return np.frombuffer(buffer, dtype=kind, count=count).reshape(dims)


def build_float_series(
    values: np.ndarray, *, name: str, valid: np.ndarray | None = None
) -> pl.Series:
    """Return a Float64 Series of ``values`` without a copy, null where ``valid`` says so.

    Parameters
    ----------
    values
        Contiguous float64 values. The Series uses their memory as it is and keeps the
        whole buffer it belongs to alive (e.g. every row of a 2-D block): do not write to
        ``values`` afterwards.
    name
        Name of the Series.
    valid
        Arrow validity bitmap of ``values`` (uint8, at least ``ceil(values.size / 8)`` bytes,
        least significant bit first: a 0 bit makes the value null), or None for no nulls.
        Saves polars' scan for NaN (``nan_to_null``), several times slower.
    """
    if valid is None:
        return pl.Series(name, values)
    buffers = [pa.py_buffer(valid), pa.py_buffer(values)]
    return pl.Series(name, pa.Array.from_buffers(pa.float64(), values.size, buffers))
