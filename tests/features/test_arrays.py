from __future__ import annotations

import gc

import numpy as np
import polars as pl
import pytest

from features.arrays import build_float_series, empty


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((3, 5), np.float64), (7, np.int64), (4, np.bool_), ((0, 9), np.float64), (0, np.int64)],
)
def test_arrays_have_the_shape_and_type_asked_and_can_be_written(
    shape: int | tuple[int, ...], dtype: type
) -> None:
    array = empty(shape, dtype)
    assert array.shape == ((shape,) if isinstance(shape, int) else shape)
    assert array.dtype == np.dtype(dtype)
    assert array.flags.c_contiguous
    assert array.flags.writeable
    array[...] = 1
    assert (array == 1).all()


def test_memory_lives_as_long_as_the_array_or_a_series_made_from_it() -> None:
    array = empty(100_000)
    array[:] = np.arange(100_000)
    series = pl.Series("x", array)
    del array
    gc.collect()
    for _ in range(20):  # would overwrite memory freed by mistake
        empty(100_000).fill(-1.0)
    assert series.sum() == sum(range(100_000))


def test_float_series_is_null_where_a_bit_is_clear_and_outlives_the_arrays() -> None:
    values = empty(11)
    values[:] = np.arange(11.0)
    valid = np.packbits(np.arange(11) % 3 != 1, bitorder="little")
    series = build_float_series(values, name="x", valid=valid)
    plain = build_float_series(values, name="y")
    del values, valid
    gc.collect()
    for _ in range(20):  # would overwrite memory freed by mistake
        empty(11).fill(-1.0)
    assert (series.name, series.dtype, plain.name) == ("x", pl.Float64, "y")
    assert series.to_list() == [None if i % 3 == 1 else float(i) for i in range(11)]
    assert plain.to_list() == [float(i) for i in range(11)]
    assert series.null_count() == 4  # rows 1, 4, 7, 10
