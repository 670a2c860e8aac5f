from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from features.site_numbers import compute_site_codes, compute_site_numbers

# short names are held whole in the 16-byte string views, long ones in data buffers
NAMES = st.sampled_from(["", "a", "perth", "abcdefghijkl", "abcdefghijklm", "é-site", "x" * 40])


def _by_name(values: list[str | None], ids: list[str]) -> list[int]:
    return [ids.index(v) if v in ids else len(ids) for v in values]


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(NAMES | st.text(max_size=20), max_size=40),
    ids=st.lists(NAMES | st.text(max_size=20), unique=True, max_size=6),
    cut=st.integers(0, 5),
)
def test_site_numbers_are_positions_in_the_list(
    values: list[str], ids: list[str], cut: int
) -> None:
    column = pl.Series("site_id", values, dtype=pl.String).slice(cut)
    assert compute_site_numbers(column, ids=ids).tolist() == _by_name(values[cut:], ids)


def test_rows_pointing_at_several_data_buffers_and_copies_of_a_name() -> None:
    # one name stored many times over several chunks (not shared views), as built in Python
    long = "broxden-park-ride-perth"
    parts = [pl.Series([long, "friarton-depot-perth", "atholl"] * 50) for _ in range(3)]
    column = pl.concat(parts, rechunk=True)
    numbers = compute_site_numbers(column, ids=["atholl", long])
    assert numbers.tolist() == [1, 2, 0] * 150


def test_a_parquet_column_of_shared_views_matches(tmp_path: Path) -> None:
    ids = [f"perth-and-kinross-site-{i:02d}" for i in range(20)]
    rng = np.random.default_rng(3)
    values = [ids[i] for i in rng.integers(0, 20, 5000)]
    pl.DataFrame({"site_id": values}).write_parquet(tmp_path / "s.parquet")
    column = pl.read_parquet(tmp_path / "s.parquet")["site_id"]
    wanted = ids[5:12]
    assert compute_site_numbers(column, ids=wanted).tolist() == _by_name(values, wanted)


def test_nulls_count_as_not_listed() -> None:
    column = pl.Series(["a", None, "b"])
    assert compute_site_numbers(column, ids=["b", "a"]).tolist() == [1, 2, 0]


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(NAMES | st.text(max_size=20), min_size=1, max_size=40), cut=st.integers(0, 5)
)
def test_site_codes_are_positions_among_the_sorted_distinct_ids(
    values: list[str], cut: int
) -> None:
    column = pl.Series("site_id", values, dtype=pl.String).slice(cut)
    ids, codes = compute_site_codes(column)
    assert ids == sorted(set(values[cut:]))
    assert [ids[c] for c in codes] == values[cut:]


def test_many_distinct_views_give_the_same_codes_through_polars(tmp_path: Path) -> None:
    # every row its own name: more distinct views than worth tracking, polars does the work
    values = [f"site-{i:05d}-with-a-long-name" for i in range(5000)][::-1]
    pl.DataFrame({"site_id": values}).write_parquet(tmp_path / "s.parquet")
    column = pl.read_parquet(tmp_path / "s.parquet")["site_id"]
    ids, codes = compute_site_codes(column)
    assert ids == sorted(values)
    assert [ids[c] for c in codes] == values
    assert compute_site_numbers(column, ids=values[:3]).tolist()[:4] == [0, 1, 2, 3]
