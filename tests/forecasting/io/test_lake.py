from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecasting.io import lake
from forecasting.schemas import PV_KEY, PV_SCHEMA, UTC_DATETIME, conform


def _pv(site: str, hours: list[int], value: float) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "site_id": site,
            "interval_start": [f"2024-06-01T{h:02d}:00:00Z" for h in hours],
            "pv_ac_kw": value,
            "flags": [[] for _ in hours],
            "source": "test.csv:1",
        }
    ).with_columns(
        pl.col("interval_start").str.to_datetime(time_zone="UTC").cast(UTC_DATETIME),
        pl.lit("2024-06-02T00:00:00Z").str.to_datetime(time_zone="UTC").alias("ingested_at"),
    )
    return conform(frame, PV_SCHEMA)


def _read(home: Path) -> pl.DataFrame:
    return lake.read_table(home, "pv", PV_SCHEMA).collect().sort(list(PV_KEY))


def test_upsert_is_idempotent_and_replaces_changed_rows(tmp_path: Path) -> None:
    first = lake.upsert_table(tmp_path, "pv", _pv("a", [1, 2], 1.0), schema=PV_SCHEMA, key=PV_KEY)
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    before = _read(tmp_path)
    again = lake.upsert_table(tmp_path, "pv", _pv("a", [1, 2], 1.0), schema=PV_SCHEMA, key=PV_KEY)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    assert_frame_equal(_read(tmp_path), before)
    later = lake.upsert_table(
        tmp_path,
        "pv",
        pl.concat([_pv("a", [2, 3], 5.0), _pv("b", [1], 2.0)]),
        schema=PV_SCHEMA,
        key=PV_KEY,
    )
    assert (later.inserted, later.updated, later.unchanged) == (2, 1, 0)
    after = _read(tmp_path)
    assert after.height == 4
    assert after.filter(pl.col("site_id") == "a")["pv_ac_kw"].to_list() == [1.0, 5.0, 5.0]
    assert lake.list_sites(tmp_path, "pv") == ["a", "b"]


def test_crash_mid_write_leaves_lake_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake.upsert_table(tmp_path, "pv", _pv("a", [1], 1.0), schema=PV_SCHEMA, key=PV_KEY)
    before = _read(tmp_path)

    def crash(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pl.DataFrame, "write_parquet", crash)
    with pytest.raises(KeyboardInterrupt):
        lake.upsert_table(tmp_path, "pv", _pv("b", [1], 2.0), schema=PV_SCHEMA, key=PV_KEY)
    assert_frame_equal(_read(tmp_path), before)
    assert not list((tmp_path / "pv").glob(".tmp-*")), "staging folder must be cleaned up"


def test_absent_table_reads_empty(tmp_path: Path) -> None:
    assert lake.read_table(tmp_path, "pv", PV_SCHEMA).collect().height == 0
